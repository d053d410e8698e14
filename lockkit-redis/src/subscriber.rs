//! One server's subscriber connection: messages on the channels a client
//! listens to, handed to whoever registered for them.
//!
//! [`RedisBackend`](crate::RedisBackend) listens on one channel of its own
//! for hand-overs to its waiters; Redlock listens on each node, per lock
//! name, for releases. Both go through this: one RESP3 connection per
//! server, opened once, which reconnects and subscribes again by itself.
//! A channel is subscribed while anyone listens to it and unsubscribed
//! [`LINGER`] after the last listener left, unless another came meanwhile
//! (a client that waits for one name again and again subscribes once);
//! subscribing and unsubscribing go out one at a time, so they reach the
//! server in the order they were decided.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use lockkit_core::{Error, ErrorKind, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, PushInfo, PushKind, Value};
use tokio::sync::OnceCell;

use crate::error::{from_redis, BACKEND};

/// How long a channel stays subscribed after its last listener left.
pub const LINGER: Duration = Duration::from_secs(2);

/// What a listener does with a message's payload. It runs on the
/// connection's reader: it must not block.
pub type Route = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Channel → the routes of its listeners, by listener id.
type Routes = Mutex<HashMap<String, Vec<(u64, Route)>>>;

/// A subscriber connection to one server.
pub struct Subscriber {
    client: Client,
    server: String,
    config: ConnectionManagerConfig,
    /// How long opening and subscribing may take.
    open_timeout: Duration,
    /// The connection, once opened.
    connection: OnceCell<ConnectionManager>,
    routes: Arc<Routes>,
    /// The channels subscribed on the wire; held while a (un)subscribe is sent.
    subscribed: Arc<tokio::sync::Mutex<HashSet<String>>>,
    next_id: AtomicU64,
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("server", &self.server)
            .field("open", &self.connection.initialized())
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    /// A subscriber over `client`, which must speak RESP3; nothing is
    /// opened until the first [`listen`](Self::listen) or [`open`](Self::open).
    pub(crate) fn new(
        client: Client,
        server: String,
        config: ConnectionManagerConfig,
        open_timeout: Duration,
    ) -> Self {
        Self {
            client,
            server,
            config,
            open_timeout,
            connection: OnceCell::new(),
            routes: Arc::default(),
            subscribed: Arc::default(),
            next_id: AtomicU64::new(0),
        }
    }

    /// The server's address, as in error messages.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The connection: opened on the first call, shared after. Fails with a
    /// `Config` error if the user may not subscribe, a `Backend` error if
    /// the server does not serve RESP3 Pub/Sub, `Unavailable` if it cannot
    /// be reached within the open timeout.
    pub async fn open(&self) -> Result<&ConnectionManager> {
        let open = self.connection.get_or_try_init(|| async {
            let routes = Arc::downgrade(&self.routes);
            let config = self
                .config
                .clone()
                .set_automatic_resubscription()
                .set_push_sender(move |push: PushInfo| deliver(&routes, push));
            ConnectionManager::new_with_config(self.client.clone(), config).await
        });
        match tokio::time::timeout(self.open_timeout, open).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(from_redis(&self.server, "open the subscriber", error)),
            Err(_) => Err(self.no_answer("open the subscriber")),
        }
    }

    fn no_answer(&self, what: &str) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            BACKEND,
            format!(
                "{}: {what}: no answer within {:?}",
                self.server, self.open_timeout
            ),
        )
    }

    /// Hands every message on `channel` to `route` until the returned
    /// [`Listening`] is dropped; returns once the channel is subscribed, so
    /// no later message is missed.
    pub async fn listen(&self, channel: &str, route: Route) -> Result<Listening> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.routes)
            .entry(channel.to_owned())
            .or_default()
            .push((id, route));
        // From here on, dropping the listener takes the route away again,
        // also if subscribing fails or this future is cancelled.
        let listening = Listening {
            routes: self.routes.clone(),
            subscribed: self.subscribed.clone(),
            connection: None,
            channel: channel.to_owned(),
            id,
        };
        let mut connection = self.open().await?.clone();
        let subscribe = async {
            let mut subscribed = self.subscribed.lock().await;
            if !subscribed.contains(channel) {
                connection
                    .subscribe(channel)
                    .await
                    .map_err(|error| from_redis(&self.server, "subscribe", error))?;
                subscribed.insert(channel.to_owned());
            }
            Ok(())
        };
        match tokio::time::timeout(self.open_timeout, subscribe).await {
            Ok(Ok(())) => {
                let mut listening = listening;
                listening.connection = Some(connection);
                Ok(listening)
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(self.no_answer("subscribe")),
        }
    }
}

/// Calls the routes of the channel a message came on. Runs on the
/// connection's reader.
fn deliver(routes: &Weak<Routes>, push: PushInfo) -> std::result::Result<(), ()> {
    if push.kind != PushKind::Message {
        return Ok(());
    }
    let Some(routes) = routes.upgrade() else {
        return Err(());
    };
    if let [Value::BulkString(channel), Value::BulkString(payload)] = push.data.as_slice() {
        let listeners: Vec<Route> = std::str::from_utf8(channel)
            .ok()
            .and_then(|channel| lock(&routes).get(channel).cloned())
            .map(|listeners| listeners.into_iter().map(|(_, route)| route).collect())
            .unwrap_or_default();
        for route in listeners {
            route(payload);
        }
    }
    Ok(())
}

/// One listener's registration; dropping it stops the messages, and the
/// last listener of a channel unsubscribes it (in the background).
pub struct Listening {
    routes: Arc<Routes>,
    subscribed: Arc<tokio::sync::Mutex<HashSet<String>>>,
    /// `None` until subscribed.
    connection: Option<ConnectionManager>,
    channel: String,
    id: u64,
}

impl fmt::Debug for Listening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listening")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Listening {
    /// A new `PING` on the subscriber connection, in the background.
    ///
    /// A subscribed connection sends no commands of its own, so nothing
    /// would notice that its reconnect attempts gave up during a long
    /// outage. A ping does: a failed one starts a new reconnect, which
    /// subscribes again. Until then the listener's own backstop serves it.
    pub fn ping_in_background(&self) {
        if let (Some(connection), Ok(runtime)) = (
            self.connection.clone(),
            tokio::runtime::Handle::try_current(),
        ) {
            let mut connection = connection;
            runtime.spawn(async move {
                let _ = redis::cmd("PING").query_async::<()>(&mut connection).await;
            });
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let last = {
            let mut routes = lock(&self.routes);
            let Some(listeners) = routes.get_mut(&self.channel) else {
                return;
            };
            listeners.retain(|(id, _)| *id != self.id);
            let last = listeners.is_empty();
            if last {
                routes.remove(&self.channel);
            }
            last
        };
        // Without a runtime the channel stays subscribed: its messages are
        // then read and dropped, which costs nothing but the reading.
        let (Some(mut connection), true, Ok(runtime)) = (
            self.connection.take(),
            last,
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        let (routes, subscribed, channel) = (
            self.routes.clone(),
            self.subscribed.clone(),
            std::mem::take(&mut self.channel),
        );
        runtime.spawn(async move {
            // A listener that comes back within LINGER (a client waiting
            // for the same name again) finds the channel still subscribed.
            tokio::time::sleep(LINGER).await;
            let mut subscribed = subscribed.lock().await;
            // A listener that came meanwhile keeps the channel.
            if lock(&routes).contains_key(&channel) || !subscribed.contains(&channel) {
                return;
            }
            if connection.unsubscribe(&channel).await.is_ok() {
                subscribed.remove(&channel);
            }
        });
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (every critical section here is a single map operation).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
