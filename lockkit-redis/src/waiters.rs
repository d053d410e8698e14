//! The one subscriber connection of a backend, and the waiters it wakes.
//!
//! A release that hands a lock to a waiter publishes the waiter's owner
//! token on the lock's channel. Waiters of one backend share one RESP3
//! connection, opened at the first wait: each channel is subscribed while
//! someone waits on it (and a moment longer, so a name contended in bursts
//! is not re-subscribed for every acquire), and a message wakes exactly the
//! waiter it names. The connection reconnects and re-subscribes by itself; a
//! message lost meanwhile costs the waiter one backstop period, never the grant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use lockkit_core::Result;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, PushInfo, PushKind, Value};
use tokio::sync::{Notify, OnceCell};

use crate::error::from_redis;

/// How long a channel stays subscribed after its last waiter left.
const LINGER: Duration = Duration::from_secs(1);

type Wakers = Mutex<HashMap<String, Arc<Notify>>>;

pub(crate) struct Waiters {
    client: Client,
    server: String,
    config: ConnectionManagerConfig,
    connection: OnceCell<ConnectionManager>,
    /// Owner token (hex) → its waiter's wake-up.
    wakers: Arc<Wakers>,
    /// Channel → how many waiters listen, and the gate that orders its
    /// SUBSCRIBE and UNSUBSCRIBE commands.
    channels: Mutex<HashMap<String, Channel>>,
}

struct Channel {
    listeners: usize,
    /// Whether the channel is subscribed; locked across the command so a
    /// subscribe and an unsubscribe of one channel never cross.
    subscribed: Arc<tokio::sync::Mutex<bool>>,
}

impl std::fmt::Debug for Waiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiters")
            .field("server", &self.server)
            .field("connected", &self.connection.initialized())
            .finish_non_exhaustive()
    }
}

impl Waiters {
    /// Waiters over `client`, which must speak RESP3.
    pub(crate) fn new(client: Client, server: String, config: ConnectionManagerConfig) -> Self {
        Self {
            client,
            server,
            config,
            connection: OnceCell::new(),
            wakers: Arc::default(),
            channels: Mutex::default(),
        }
    }

    /// Starts listening for a grant to `owner` on `channel`; returns once
    /// the server confirmed the subscription, so no later message is missed.
    pub(crate) async fn listen(self: &Arc<Self>, channel: &str, owner: &str) -> Result<Listener> {
        let wake = Arc::new(Notify::new());
        lock(&self.wakers).insert(owner.to_owned(), wake.clone());
        let subscribed = {
            let mut channels = lock(&self.channels);
            let entry = channels
                .entry(channel.to_owned())
                .or_insert_with(|| Channel {
                    listeners: 0,
                    subscribed: Arc::default(),
                });
            entry.listeners += 1;
            entry.subscribed.clone()
        };
        // From here on the listener's drop undoes the registration, also if
        // the subscription below fails or this future is cancelled.
        let listener = Listener {
            waiters: self.clone(),
            channel: channel.to_owned(),
            owner: owner.to_owned(),
            wake,
        };
        let mut subscribed = subscribed.lock().await;
        if !*subscribed {
            let mut connection = self.connection().await?;
            connection
                .subscribe(channel)
                .await
                .map_err(|error| from_redis(&self.server, "subscribe to grants", error))?;
            *subscribed = true;
        }
        Ok(listener)
    }

    async fn connection(&self) -> Result<ConnectionManager> {
        self.connection
            .get_or_try_init(|| async {
                let wakers = Arc::downgrade(&self.wakers);
                let config = self
                    .config
                    .clone()
                    .set_automatic_resubscription()
                    .set_push_sender(move |push: PushInfo| deliver(&wakers, push));
                ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await
            .cloned()
            .map_err(|error| from_redis(&self.server, "open the subscriber connection", error))
    }

    /// Unsubscribes `channel` after [`LINGER`] if nobody listens by then.
    fn forget_later(self: &Arc<Self>, channel: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let waiters = Arc::downgrade(self);
        runtime.spawn(async move {
            tokio::time::sleep(LINGER).await;
            let Some(waiters) = waiters.upgrade() else {
                return;
            };
            waiters.forget(&channel).await;
        });
    }

    async fn forget(&self, channel: &str) {
        let Some(gate) = self.idle_gate(channel) else {
            return;
        };
        let mut subscribed = gate.lock().await;
        if self.idle_gate(channel).is_none() {
            return;
        }
        if *subscribed {
            if let Some(connection) = self.connection.get() {
                // A failure leaves the channel subscribed until the next
                // reconnect; its messages are ignored meanwhile.
                let _ = connection.clone().unsubscribe(channel).await;
            }
            *subscribed = false;
        }
        let mut channels = lock(&self.channels);
        if channels
            .get(channel)
            .is_some_and(|entry| entry.listeners == 0 && Arc::ptr_eq(&entry.subscribed, &gate))
        {
            channels.remove(channel);
        }
    }

    /// The gate of `channel` if nobody listens on it.
    fn idle_gate(&self, channel: &str) -> Option<Arc<tokio::sync::Mutex<bool>>> {
        lock(&self.channels)
            .get(channel)
            .filter(|entry| entry.listeners == 0)
            .map(|entry| entry.subscribed.clone())
    }
}

/// Wakes the waiter a grant message names. Runs on the connection's reader.
fn deliver(wakers: &Weak<Wakers>, push: PushInfo) -> std::result::Result<(), ()> {
    if push.kind != PushKind::Message {
        return Ok(());
    }
    let Some(wakers) = wakers.upgrade() else {
        return Err(());
    };
    if let [_, Value::BulkString(owner)] = push.data.as_slice() {
        if let Ok(owner) = std::str::from_utf8(owner) {
            if let Some(wake) = lock(&wakers).get(owner) {
                wake.notify_one();
            }
        }
    }
    Ok(())
}

/// One waiter's registration; dropping it stops listening.
pub(crate) struct Listener {
    waiters: Arc<Waiters>,
    channel: String,
    owner: String,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Resolves when a release handed the lock to this waiter (or did so
    /// since the last call).
    pub(crate) async fn handed_over(&self) {
        self.wake.notified().await;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        lock(&self.waiters.wakers).remove(&self.owner);
        let idle = {
            let mut channels = lock(&self.waiters.channels);
            channels.get_mut(&self.channel).is_some_and(|entry| {
                entry.listeners -= 1;
                entry.listeners == 0
            })
        };
        if idle {
            self.waiters.forget_later(std::mem::take(&mut self.channel));
        }
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (every critical section here is a single map operation).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
