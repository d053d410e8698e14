//! The one subscriber connection of a backend, and the waiters it wakes.
//!
//! Each backend instance listens on a channel of its own,
//! `<namespace>:grants:<random id>`, which its waiters name when they take
//! a place in a lock's queue. A release that hands the lock to one of them
//! publishes `<owner>:<token>` there, so the message reaches only this
//! client and wakes only the waiter it names — no herd, however many
//! clients wait on the same name. The channel is subscribed once, on a RESP3
//! connection opened at connect, which reconnects and re-subscribes by
//! itself; a message lost meanwhile costs the waiter one backstop period,
//! never the grant.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use std::time::Duration;

use lockkit_core::{Error, ErrorKind, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, PushInfo, PushKind, Value};
use tokio::sync::{Notify, OnceCell};

use crate::error::{from_redis, BACKEND};
use crate::scripts::Handover;

type Mailboxes = Mutex<HashMap<String, Arc<Mailbox>>>;

/// Where the subscriber leaves a hand-over for one waiter.
#[derive(Debug, Default)]
struct Mailbox {
    /// The fencing token handed over; 0 until then.
    token: AtomicU64,
    wake: Notify,
}

pub(crate) struct Waiters {
    client: Client,
    server: String,
    config: ConnectionManagerConfig,
    channel: String,
    /// How long opening and subscribing may take.
    open_timeout: Duration,
    /// The subscribed connection, once opened.
    connection: OnceCell<ConnectionManager>,
    /// Owner token (hex) → its waiter's mailbox.
    mailboxes: Arc<Mailboxes>,
}

impl std::fmt::Debug for Waiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiters")
            .field("server", &self.server)
            .field("channel", &self.channel)
            .field("subscribed", &self.connection.initialized())
            .finish_non_exhaustive()
    }
}

impl Waiters {
    /// Waiters listening on `channel` over `client`, which must speak RESP3.
    pub(crate) fn new(
        client: Client,
        server: String,
        config: ConnectionManagerConfig,
        channel: String,
        open_timeout: Duration,
    ) -> Self {
        Self {
            client,
            server,
            config,
            channel,
            open_timeout,
            connection: OnceCell::new(),
            mailboxes: Arc::default(),
        }
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
        let connection = self.subscribe().await?;
        ping_in_background(connection.clone());
        Ok(listener)
    }

    /// The subscribed connection: opened and subscribed on the first call
    /// (at connect, which so learns whether the user may subscribe), shared
    /// after.
    pub(crate) async fn subscribe(&self) -> Result<&ConnectionManager> {
        let open = self.connection.get_or_try_init(|| async {
            let mailboxes = Arc::downgrade(&self.mailboxes);
            let config = self
                .config
                .clone()
                .set_automatic_resubscription()
                .set_push_sender(move |push: PushInfo| deliver(&mailboxes, push));
            let mut connection =
                ConnectionManager::new_with_config(self.client.clone(), config).await?;
            connection.subscribe(&self.channel).await?;
            Ok(connection)
        });
        match tokio::time::timeout(self.open_timeout, open).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(from_redis(&self.server, "subscribe to hand-overs", error)),
            Err(_) => Err(Error::new(
                ErrorKind::Unavailable,
                BACKEND,
                format!(
                    "{}: subscribe to hand-overs: no connection within {:?}",
                    self.server, self.open_timeout
                ),
            )),
        }
    }
}

/// The subscriber sends no commands of its own once subscribed, so nothing
/// would notice that its reconnect attempts gave up during a long outage. A
/// ping per new waiter does: a failed one starts a new reconnect, which
/// subscribes again. The waiter does not wait for it; until then its
/// backstop timer serves it.
fn ping_in_background(mut connection: ConnectionManager) {
    tokio::spawn(async move {
        let _ = redis::cmd("PING").query_async::<()>(&mut connection).await;
    });
}

/// Wakes the waiter a hand-over names. Runs on the connection's reader.
fn deliver(mailboxes: &Weak<Mailboxes>, push: PushInfo) -> std::result::Result<(), ()> {
    if push.kind != PushKind::Message {
        return Ok(());
    }
    let Some(mailboxes) = mailboxes.upgrade() else {
        return Err(());
    };
    if let [_, Value::BulkString(payload)] = push.data.as_slice() {
        if let Some(handover) = Handover::decode(payload) {
            if let Some(mailbox) = lock(&mailboxes).get(handover.owner) {
                mailbox.token.store(handover.token, Ordering::Release);
                mailbox.wake.notify_one();
            }
        }
    }
    Ok(())
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

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (every critical section here is a single map operation).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
