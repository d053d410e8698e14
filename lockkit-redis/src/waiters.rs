//! The waiters of one backend, woken by hand-overs on its own channel.
//!
//! Each backend instance listens on a channel of its own,
//! `<namespace>:grants:<random id>`, which its waiters name when they take
//! a place in a lock's queue. A release that hands the lock to one of them
//! publishes `<owner>:<token>` there, so the message reaches only this
//! client and wakes only the waiter it names — no herd, however many
//! clients wait on the same name. The channel is subscribed once, at
//! connect, on the backend's [`Subscriber`]; a message lost while it
//! reconnects costs the waiter one backstop period, never the grant.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lockkit_core::Result;
use tokio::sync::{Notify, OnceCell};

use crate::scripts::Handover;
use crate::subscriber::{lock, Listening, Subscriber};

type Mailboxes = Mutex<HashMap<String, Arc<Mailbox>>>;

/// Where the subscriber leaves a hand-over for one waiter.
#[derive(Debug, Default)]
struct Mailbox {
    /// The fencing token handed over; 0 until then.
    token: AtomicU64,
    wake: Notify,
}

#[derive(Debug)]
pub(crate) struct Waiters {
    subscriber: Arc<Subscriber>,
    channel: String,
    /// The channel's subscription, once made.
    listening: OnceCell<Listening>,
    /// Owner token (hex) → its waiter's mailbox.
    mailboxes: Arc<Mailboxes>,
}

impl Waiters {
    /// Waiters listening on `channel` of `subscriber`.
    pub(crate) fn new(subscriber: Arc<Subscriber>, channel: String) -> Self {
        Self {
            subscriber,
            channel,
            listening: OnceCell::new(),
            mailboxes: Arc::default(),
        }
    }

    /// The subscriber the channel is subscribed on.
    pub(crate) fn subscriber(&self) -> &Arc<Subscriber> {
        &self.subscriber
    }

    /// The channel hand-overs to this backend's waiters are published on.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// Starts listening for a hand-over to `owner`; returns once the
    /// channel is subscribed, so no later message is missed.
    pub(crate) async fn listen(&self, owner: &str) -> Result<Listener> {
        let mailbox = Arc::new(Mailbox::default());
        lock(&self.mailboxes).insert(owner.to_owned(), mailbox.clone());
        // From here on the listener's drop takes the mailbox away again,
        // also if subscribing fails or this future is cancelled.
        let listener = Listener {
            mailboxes: self.mailboxes.clone(),
            owner: owner.to_owned(),
            mailbox,
        };
        self.subscribe().await?.ping_in_background();
        Ok(listener)
    }

    /// The channel's subscription: made on the first call (at connect,
    /// which so learns whether the user may subscribe), kept after.
    pub(crate) async fn subscribe(&self) -> Result<&Listening> {
        self.listening
            .get_or_try_init(|| {
                let mailboxes = Arc::downgrade(&self.mailboxes);
                self.subscriber.listen(
                    &self.channel,
                    Arc::new(move |payload: &[u8]| {
                        if let Some(mailboxes) = mailboxes.upgrade() {
                            deliver(&mailboxes, payload);
                        }
                    }),
                )
            })
            .await
    }
}

/// Wakes the waiter a hand-over names. Runs on the connection's reader.
fn deliver(mailboxes: &Mailboxes, payload: &[u8]) {
    if let Some(handover) = Handover::decode(payload) {
        if let Some(mailbox) = lock(mailboxes).get(handover.owner) {
            mailbox.token.store(handover.token, Ordering::Release);
            mailbox.wake.notify_one();
        }
    }
}

/// One waiter's registration; dropping it stops listening.
pub(crate) struct Listener {
    mailboxes: Arc<Mailboxes>,
    owner: String,
    mailbox: Arc<Mailbox>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Resolves with the fencing token when a release handed the lock to
    /// this waiter (or did so since the last call).
    pub(crate) async fn handed_over(&self) -> u64 {
        loop {
            self.mailbox.wake.notified().await;
            let token = self.mailbox.token.load(Ordering::Acquire);
            if token != 0 {
                return token;
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        lock(&self.mailboxes).remove(&self.owner);
    }
}
