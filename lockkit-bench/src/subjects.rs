//! What the workloads measure: lockkit through `connect`, and the raw floor
//! — the same server commands issued with the driver directly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lockkit::{Acquire, LockConfig, Locker};
use lockkit_redis::keys::LockKeys;
use lockkit_redis::scripts::{fast_acquire, FastReply, Scripts};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, PushInfo, PushKind, Script};
use tokio::sync::{mpsc, Mutex};

/// The TTL of every benchmark grant.
pub(crate) const TTL: Duration = Duration::from_secs(10);

pub(crate) type Outcome<T> = Result<T, String>;

/// One client of a lock service, as a workload drives it.
#[async_trait]
pub(crate) trait Subject: Send + Sync {
    /// Acquires the free lock `name` and releases it.
    async fn pair(&self, name: &str) -> Outcome<()>;

    /// Acquires `name`, waiting as the backend waits, then releases it at
    /// once; returns how long the acquire waited.
    async fn contend(&self, name: &str) -> Outcome<Duration>;
}

/// Makes the clients of one run: each call a new client, with its own
/// connections where the backend has them.
#[async_trait]
pub(crate) trait Service: Send + Sync {
    async fn client(&self) -> Outcome<Arc<dyn Subject>>;
}

/// lockkit, connected by URL as an application would.
pub(crate) struct Lockkit {
    pub(crate) config: LockConfig,
    /// The memory backend's locks live in its `Locker`: every client shares one.
    pub(crate) shared: Option<Locker>,
}

impl Lockkit {
    /// lockkit on the server at `url`, each client its own connections.
    pub(crate) fn at(url: String, namespace: &str) -> Box<dyn Service> {
        Box::new(Self {
            config: LockConfig::new(url).namespace(namespace),
            shared: None,
        })
    }
}

#[async_trait]
impl Service for Lockkit {
    async fn client(&self) -> Outcome<Arc<dyn Subject>> {
        let locks = match &self.shared {
            Some(locks) => locks.clone(),
            None => lockkit::connect(self.config.clone())
                .await
                .map_err(|error| error.to_string())?,
        };
        Ok(Arc::new(LockkitClient { locks }))
    }
}

struct LockkitClient {
    locks: Locker,
}

#[async_trait]
impl Subject for LockkitClient {
    async fn pair(&self, name: &str) -> Outcome<()> {
        let lease = self
            .locks
            .acquire(name, Acquire::ttl(TTL))
            .await
            .map_err(|error| error.to_string())?;
        lease.release().await.map_err(|error| error.to_string())
    }

    async fn contend(&self, name: &str) -> Outcome<Duration> {
        let started = Instant::now();
        let lease = self
            .locks
            .acquire(name, Acquire::ttl(TTL))
            .await
            .map_err(|error| error.to_string())?;
        let waited = started.elapsed();
        lease.release().await.map_err(|error| error.to_string())?;
        Ok(waited)
    }
}

/// The Redis floor: lockkit's own uncontended acquire (`SET NX PX` and
/// `INCRBY`, pipelined) and its release script by EVALSHA, on one
/// multiplexed connection; for W2, what a hand-rolled pub/sub lock
/// does — `SET NX PX`, a release script that deletes and publishes, and
/// waiters that retry on each message.
///
/// With `plain`, the peer a user would write by hand instead: `SET NX PX`
/// and a compare-and-delete script by EVALSHA for W1 and W3, the same
/// pub/sub lock for W2.
pub(crate) struct RawRedis {
    pub(crate) url: String,
    pub(crate) namespace: String,
    pub(crate) plain: bool,
}

#[async_trait]
impl Service for RawRedis {
    async fn client(&self) -> Outcome<Arc<dyn Subject>> {
        let url = if self.url.contains('?') {
            format!("{}&protocol=resp3", self.url)
        } else {
            format!("{}?protocol=resp3", self.url)
        };
        let client = Client::open(url).map_err(|error| error.to_string())?;
        let (sender, pushes) = mpsc::unbounded_channel();
        let config = AsyncConnectionConfig::new().set_push_sender(sender);
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|error| error.to_string())?;
        Ok(Arc::new(RawRedisClient {
            connection,
            pushes: Mutex::new(pushes),
            namespace: self.namespace.clone(),
            owners: AtomicU64::new(0),
            release_and_publish: Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                 redis.call('DEL', KEYS[1]) redis.call('PUBLISH', KEYS[2], '') return 1 end \
                 return 0",
            ),
            compare_and_delete: Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                 return redis.call('DEL', KEYS[1]) end return 0",
            ),
            plain: self.plain,
            subscribed: Mutex::new(None),
        }))
    }
}

struct RawRedisClient {
    connection: MultiplexedConnection,
    pushes: Mutex<mpsc::UnboundedReceiver<PushInfo>>,
    namespace: String,
    owners: AtomicU64,
    release_and_publish: Script,
    compare_and_delete: Script,
    plain: bool,
    subscribed: Mutex<Option<String>>,
}

impl RawRedisClient {
    fn owner(&self) -> String {
        format!("{:032x}", self.owners.fetch_add(1, Ordering::Relaxed))
    }

    /// The hand-rolled pair: `SET NX PX`, then compare-and-delete.
    async fn plain_pair(&self, name: &str) -> Outcome<()> {
        let key = format!("{}:plain:{{{name}}}", self.namespace);
        let owner = self.owner();
        let mut connection = self.connection.clone();
        if !set_nx(&mut connection, &key, &owner).await? {
            return Err(format!("plain SET NX of free lock {name} refused"));
        }
        let deleted: i64 = self
            .compare_and_delete
            .key(&key)
            .arg(&owner)
            .invoke_async(&mut connection)
            .await
            .map_err(|error| error.to_string())?;
        if deleted == 1 {
            Ok(())
        } else {
            Err(format!(
                "plain compare-and-delete of {name} replied {deleted}"
            ))
        }
    }
}

#[async_trait]
impl Subject for RawRedisClient {
    async fn pair(&self, name: &str) -> Outcome<()> {
        if self.plain {
            return self.plain_pair(name).await;
        }
        let keys = LockKeys::new(&self.namespace, name);
        let owner = self.owner();
        let scripts = Scripts::get();
        let mut connection = self.connection.clone();
        let ttl = TTL.as_millis() as u64;
        let (set, token): (Option<String>, i64) = fast_acquire(&keys, &owner, ttl)
            .query_async(&mut connection)
            .await
            .map_err(|error| error.to_string())?;
        let reply = FastReply::decode(set.is_some(), token);
        if !matches!(reply, Some(FastReply::Granted(_))) {
            return Err(format!(
                "raw acquire of free lock {name} refused: {reply:?}"
            ));
        }
        let released: i64 = scripts
            .release(&keys, &owner)
            .invoke_async(&mut connection)
            .await
            .map_err(|error| error.to_string())?;
        if released == 1 {
            Ok(())
        } else {
            Err(format!("raw release of {name} replied {released}"))
        }
    }

    async fn contend(&self, name: &str) -> Outcome<Duration> {
        let key = format!("{}:raw:{{{name}}}", self.namespace);
        let channel = format!("{key}:released");
        let mut connection = self.connection.clone();
        {
            let mut subscribed = self.subscribed.lock().await;
            if subscribed.as_deref() != Some(channel.as_str()) {
                connection
                    .subscribe(&channel)
                    .await
                    .map_err(|error| error.to_string())?;
                *subscribed = Some(channel.clone());
            }
        }
        let owner = self.owner();
        let started = Instant::now();
        let mut pushes = self.pushes.lock().await;
        loop {
            while pushes.try_recv().is_ok() {}
            if set_nx(&mut connection, &key, &owner).await? {
                break;
            }
            next_release(&mut pushes).await;
        }
        let waited = started.elapsed();
        drop(pushes);
        let _: i64 = self
            .release_and_publish
            .key(&key)
            .key(&channel)
            .arg(&owner)
            .invoke_async(&mut connection)
            .await
            .map_err(|error| error.to_string())?;
        Ok(waited)
    }
}

/// Waits for the next release message; the timeout is only a backstop.
pub(crate) async fn next_release(pushes: &mut mpsc::UnboundedReceiver<PushInfo>) {
    loop {
        match tokio::time::timeout(Duration::from_millis(100), pushes.recv()).await {
            Ok(Some(push)) if push.kind != PushKind::Message => continue,
            _ => break,
        }
    }
}

/// `SET key owner NX PX <TTL>`: whether the key was free and is now set.
async fn set_nx(connection: &mut MultiplexedConnection, key: &str, owner: &str) -> Outcome<bool> {
    let set: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(owner)
        .arg("NX")
        .arg("PX")
        .arg(TTL.as_millis() as u64)
        .query_async(connection)
        .await
        .map_err(|error| error.to_string())?;
    Ok(set.is_some())
}

/// The PostgreSQL floor: prepared `pg_try_advisory_lock` / `pg_advisory_unlock`
/// with tokio-postgres, pipelined over as many connections as lockkit's
/// shared sessions; for W2, `pg_advisory_lock` — the server's own queue —
/// on each client's connections.
pub(crate) struct RawPostgres {
    pub(crate) url: String,
    pub(crate) namespace: String,
    pub(crate) connections: usize,
}

#[async_trait]
impl Service for RawPostgres {
    async fn client(&self) -> Outcome<Arc<dyn Subject>> {
        let mut sessions = Vec::with_capacity(self.connections);
        for _ in 0..self.connections {
            let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                .await
                .map_err(|error| error.to_string())?;
            tokio::spawn(connection);
            let prepare = |sql| client.prepare(sql);
            let (try_lock, lock, unlock) = tokio::try_join!(
                prepare("SELECT pg_try_advisory_lock($1)"),
                prepare("SELECT pg_advisory_lock($1)"),
                prepare("SELECT pg_advisory_unlock($1)"),
            )
            .map_err(|error| error.to_string())?;
            sessions.push(RawSession {
                client,
                try_lock,
                lock,
                unlock,
            });
        }
        Ok(Arc::new(RawPostgresClient {
            sessions,
            next: AtomicU64::new(0),
            namespace: self.namespace.clone(),
        }))
    }
}

struct RawSession {
    client: tokio_postgres::Client,
    try_lock: tokio_postgres::Statement,
    lock: tokio_postgres::Statement,
    unlock: tokio_postgres::Statement,
}

struct RawPostgresClient {
    sessions: Vec<RawSession>,
    next: AtomicU64,
    namespace: String,
}

impl RawPostgresClient {
    fn session(&self) -> &RawSession {
        let next = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        &self.sessions[next % self.sessions.len()]
    }

    async fn unlock(&self, session: &RawSession, key: i64, name: &str) -> Outcome<()> {
        let row = session
            .client
            .query_one(&session.unlock, &[&key])
            .await
            .map_err(|error| error.to_string())?;
        if row.get::<_, bool>(0) {
            Ok(())
        } else {
            Err(format!("raw unlock of {name}: not held"))
        }
    }
}

#[async_trait]
impl Subject for RawPostgresClient {
    async fn pair(&self, name: &str) -> Outcome<()> {
        let key =
            lockkit_postgres::lock_key(&self.namespace, name).map_err(|error| error.to_string())?;
        let session = self.session();
        let row = session
            .client
            .query_one(&session.try_lock, &[&key])
            .await
            .map_err(|error| error.to_string())?;
        if !row.get::<_, bool>(0) {
            return Err(format!("raw try-lock of free lock {name} refused"));
        }
        self.unlock(session, key, name).await
    }

    async fn contend(&self, name: &str) -> Outcome<Duration> {
        let key =
            lockkit_postgres::lock_key(&self.namespace, name).map_err(|error| error.to_string())?;
        let session = self.session();
        let started = Instant::now();
        session
            .client
            .query_one(&session.lock, &[&key])
            .await
            .map_err(|error| error.to_string())?;
        let waited = started.elapsed();
        self.unlock(session, key, name).await?;
        Ok(waited)
    }
}

/// rslock 0.10 — the Redlock crate users pick — on one Redis node (the
/// redis backend's peer) or on the five Redlock nodes, with its defaults: a
/// try is one `SET NX PX` per node, a release a compare-and-delete script
/// per node, waiting for every node; waiting (W2) retries up to 3 times
/// 0–200 ms apart, in a loop.
pub(crate) struct Rslock {
    pub(crate) urls: Vec<String>,
    pub(crate) namespace: String,
}

#[async_trait]
impl Service for Rslock {
    async fn client(&self) -> Outcome<Arc<dyn Subject>> {
        let manager = rslock::LockManager::new(self.urls.clone());
        Ok(Arc::new(RslockClient {
            manager,
            namespace: self.namespace.clone(),
        }))
    }
}

struct RslockClient {
    manager: rslock::LockManager,
    namespace: String,
}

#[async_trait]
impl Subject for RslockClient {
    async fn pair(&self, name: &str) -> Outcome<()> {
        let resource = format!("{}:rslock:{name}", self.namespace);
        let lock = self
            .manager
            .lock(resource.as_bytes(), TTL)
            .await
            .map_err(|error| format!("rslock lock of free lock {name}: {error}"))?;
        self.manager.unlock(&lock).await;
        Ok(())
    }

    async fn contend(&self, name: &str) -> Outcome<Duration> {
        let resource = format!("{}:rslock:{name}", self.namespace);
        let started = Instant::now();
        let lock = self
            .manager
            .acquire_no_guard(resource.as_bytes(), TTL)
            .await
            .map_err(|error| format!("rslock acquire of {name}: {error}"))?;
        let waited = started.elapsed();
        self.manager.unlock(&lock).await;
        Ok(waited)
    }
}
