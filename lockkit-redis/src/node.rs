//! One Redis server: its command connection, and each lock step run on it
//! with its reply decoded and its errors named (server, step, lock).
//!
//! [`RedisBackend`](crate::RedisBackend) is one node plus the fair queue
//! and its pub/sub hand-overs; Redlock runs the same steps on each of its
//! nodes. With [`scripts`](crate::scripts) and [`keys`](crate::keys) this
//! is the interface Redlock and the benchmark build on.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use lockkit_core::{repeat, Error, ErrorKind, Result, REPEAT_FOR};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue, IntoConnectionInfo, Pipeline, ProtocolVersion};

use crate::error::{from_redis, unexpected_reply, BACKEND};
use crate::keys::LockKeys;
use crate::options::RedisOptions;
use crate::scripts::{OwnerCheck, ScriptCall, Scripts};
use crate::subscriber::Subscriber;

/// One Redis server and its command connection, which reconnects by itself.
pub struct Node {
    /// `None` once closed.
    connection: Mutex<Option<ConnectionManager>>,
    server: String,
    /// The user the URL names (`default` if none).
    user: String,
    options: RedisOptions,
    /// The same server over RESP3, for a [`Subscriber`].
    subscriber_client: Client,
    /// The command connection's settings, for a subscriber's.
    config: ConnectionManagerConfig,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("server", &self.server)
            .finish()
    }
}

impl Node {
    /// Connects to `url` and checks the server: it answers (`PING`), and
    /// passes [`check_server`](Self::check_server). See
    /// [`RedisBackend::connect`](crate::RedisBackend::connect) for the URL
    /// forms; the rights of the user are the caller's to check, by doing
    /// what it will do.
    ///
    /// Fails with [`Config`](ErrorKind::Config) for a URL or options that
    /// cannot work (the message names the field) and
    /// [`Unavailable`](ErrorKind::Unavailable) if the server cannot be reached.
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self> {
        options.validate()?;
        check_url(url)?;
        let info = url.into_connection_info().map_err(|error| {
            Error::new(
                ErrorKind::Config,
                BACKEND,
                format!(
                    "url: {error}; expected redis://[user:password@]host[:port][/db] (or \
                     rediss://, valkey://, valkeys://) or redis+unix:///path/redis.sock[?db=0] \
                     (or unix://, valkey+unix://)"
                ),
            )
        })?;
        let server = info.addr().to_string();
        let user = info
            .redis_settings()
            .username()
            .unwrap_or("default")
            .to_owned();
        let client =
            Client::open(info.clone()).map_err(|error| from_redis(&server, "url", error))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout))
            // Fail fast while the server is down; the next command tries again.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let connection = ConnectionManager::new_with_config(client, config.clone())
            .await
            .map_err(|error| from_redis(&server, "connect", error))?;
        let subscriber = info.clone().set_redis_settings(
            info.redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3),
        );
        let subscriber_client =
            Client::open(subscriber).map_err(|error| from_redis(&server, "url", error))?;
        let node = Self {
            connection: Mutex::new(Some(connection)),
            server,
            user,
            options,
            subscriber_client,
            config,
        };
        node.ping().await?;
        node.check_server().await?;
        Ok(node)
    }

    /// A subscriber connection to this server (opened at its first use),
    /// which rides out a restart; a longer outage ends its reconnect
    /// attempts until a listener pings.
    pub fn subscriber(&self) -> Subscriber {
        Subscriber::new(
            self.subscriber_client.clone(),
            self.server.clone(),
            self.config
                .clone()
                .set_number_of_retries(10)
                .set_max_delay(Duration::from_secs(1)),
            self.options.connect_timeout + self.options.response_timeout,
        )
    }

    /// The user the URL names (`default` if none).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The options this node was connected with.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// The server's `run_id` (`INFO server`): a random id each server
    /// process picks at start, the same whatever address reached it.
    /// `None` if this user may not run `INFO`.
    pub async fn run_id(&self) -> Result<Option<String>> {
        self.server_info("run_id").await
    }

    /// The server's `redis_version` (`INFO server`); `None` if this user
    /// may not run `INFO`.
    pub async fn version(&self) -> Result<Option<String>> {
        self.server_info("redis_version").await
    }

    /// One field of `INFO server`; `None` if absent or if this user may not
    /// run `INFO`.
    async fn server_info(&self, field: &str) -> Result<Option<String>> {
        let mut connection = self.connection()?;
        match redis::cmd("INFO")
            .arg("server")
            .query_async::<String>(&mut connection)
            .await
        {
            Ok(info) => Ok(info.lines().find_map(|line| {
                let value = line.strip_prefix(field)?.strip_prefix(':')?;
                Some(value.trim().to_owned())
            })),
            Err(error)
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) =>
            {
                Ok(None)
            }
            Err(error) => Err(from_redis(&self.server, "INFO server", error)),
        }
    }

    /// The lock's holder as this server has it — its owner token and the
    /// TTL it has left — or `None` if it is free: `GET` and `PTTL` in one
    /// `MULTI`, one round trip. A lock key without a TTL was written by
    /// something other than lockkit, whose every grant has one: that is a
    /// [`Backend`](ErrorKind::Backend) error naming the key.
    pub async fn holder(&self, keys: &LockKeys) -> Result<Option<(String, Duration)>> {
        let mut pipeline = redis::pipe();
        pipeline
            .atomic()
            .cmd("GET")
            .arg(keys.lock())
            .cmd("PTTL")
            .arg(keys.lock());
        let what = Operation("read the holder of", keys);
        let (owner, left): (Option<String>, i64) = self.query(&pipeline, &what).await?;
        match (owner, u64::try_from(left)) {
            (Some(owner), Ok(left)) => Ok(Some((owner, Duration::from_millis(left)))),
            (None, _) => Ok(None),
            (Some(_), Err(_)) => Err(Error::new(
                ErrorKind::Backend,
                BACKEND,
                format!(
                    "{what}: key `{}` has no TTL, so lockkit did not write it (every grant \
                     has one); delete it if nobody holds the lock",
                    keys.lock()
                ),
            )
            .at(self.server.clone())),
        }
    }

    /// The server's address, as in error messages.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The keys of lock `name` in this node's namespace.
    pub fn keys(&self, name: &str) -> LockKeys {
        LockKeys::new(&self.options.namespace, name)
    }

    /// The command connection, or a non-retryable error once closed.
    pub(crate) fn connection(&self) -> Result<ConnectionManager> {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connection.clone().ok_or_else(|| self.closed())
    }

    /// The error of every call after [`close`](Self::close).
    pub(crate) fn closed(&self) -> Error {
        Error::closed(BACKEND).at(&self.server)
    }

    /// Drops the connection; every later call fails with a non-retryable
    /// `Unavailable`.
    pub fn close(&self) {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(connection);
    }

    /// Whether the server answers (`PING`).
    pub async fn ping(&self) -> Result<()> {
        let mut connection = self.connection()?;
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await
            .map_err(|error| from_redis(&self.server, "ping", error))
    }

    /// What `connect` checks beyond a reply: the server is a primary, not a
    /// cluster node, and its `maxmemory-policy` cannot evict a held lock's
    /// key (unless [`RedisOptions::allow_eviction`]); a server without an
    /// append-only file is let through with a warning. A user who may not
    /// run `INFO` is let through with a warning: nothing else shows these
    /// settings.
    pub async fn check_server(&self) -> Result<()> {
        let server = &self.server;
        let mut connection = self.connection()?;
        let mut info = String::new();
        for section in ["replication", "memory", "cluster", "persistence"] {
            match redis::cmd("INFO")
                .arg(section)
                .query_async::<String>(&mut connection)
                .await
            {
                Ok(text) => info.push_str(&text),
                Err(error)
                    if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) =>
                {
                    tracing::warn!(
                        server,
                        "this user may not run INFO: the server's role and maxmemory-policy are unchecked"
                    );
                    return Ok(());
                }
                Err(error) => return Err(from_redis(server, format!("INFO {section}"), error)),
            }
        }
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        if field("role") == Some("slave") {
            let primary = format!(
                "{}:{}",
                field("master_host").unwrap_or("?"),
                field("master_port").unwrap_or("?")
            );
            return Err(Error::new(
                ErrorKind::Config,
                BACKEND,
                format!(
                    "{server}: url names a read-only replica of {primary}: a lock must be \
                     written on the primary; point url at it"
                ),
            ));
        }
        if field("cluster_enabled") == Some("1") {
            return Err(Error::new(
                ErrorKind::Config,
                BACKEND,
                format!(
                    "{server}: url names a node of a Redis Cluster (cluster_enabled:1): \
                     lockkit-redis speaks to one server, and a cluster node refuses the keys of \
                     the slots it does not serve (MOVED). Point url at a server with \
                     cluster-enabled no"
                ),
            ));
        }
        if field("aof_enabled") == Some("0") {
            tracing::warn!(
                server,
                "appendonly is off on this server: a restart forgets every lock written since \
                 its last snapshot, and hands out those fencing tokens again"
            );
        }
        match field("maxmemory_policy") {
            Some(policy) if policy != "noeviction" && !self.options.allow_eviction => {
                Err(Error::new(
                    ErrorKind::Config,
                    BACKEND,
                    format!(
                        "{server}: maxmemory-policy is `{policy}`, which may evict a held lock's \
                         key under memory pressure and grant the lock again. Set \
                         `maxmemory-policy noeviction` (every other policy can evict a key with \
                         a TTL), or accept the risk with [redis] allow_eviction = true"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Runs a script; with `min_replicas`, pipelined with `WAIT` on the same
    /// connection, and returns how many replicas acknowledged.
    pub async fn run<T: FromRedisValue>(
        &self,
        invocation: &ScriptCall<'_>,
        what: &Operation<'_>,
    ) -> Result<(T, Option<u32>)> {
        let replicas = self.options.min_replicas;
        if replicas == 0 {
            let mut connection = self.connection()?;
            return invocation
                .invoke_async(&mut connection)
                .await
                .map(|reply| (reply, None))
                .map_err(|error| from_redis(&self.server, what, error));
        }
        let timeout = self.options.replica_timeout.as_millis().max(1) as u64;
        let mut pipeline = redis::pipe();
        pipeline
            .add_command(invocation.cmd().clone())
            .cmd("WAIT")
            .arg(replicas)
            .arg(timeout);
        self.run_pipeline::<(T, u32)>(invocation, &pipeline, what)
            .await
            .map(|(reply, acknowledged)| (reply, Some(acknowledged)))
    }

    /// Sends `pipeline`, which runs `invocation`'s script: after a
    /// `NOSCRIPT` (a restarted or flushed server) the script is loaded and
    /// the pipeline sent again.
    pub async fn run_pipeline<T: FromRedisValue>(
        &self,
        invocation: &ScriptCall<'_>,
        pipeline: &Pipeline,
        what: &Operation<'_>,
    ) -> Result<T> {
        let mut connection = self.connection()?;
        let server = &self.server;
        let mut reply = pipeline.query_async::<T>(&mut connection).await;
        if reply.as_ref().is_err_and(|error| {
            error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        }) {
            invocation
                .load_async(&mut connection)
                .await
                .map_err(|error| from_redis(server, what, error))?;
            reply = pipeline.query_async(&mut connection).await;
        }
        reply.map_err(|error| from_redis(server, what, error))
    }

    /// Sends a pipeline of plain commands (no script): one round trip.
    pub async fn query<T: FromRedisValue>(
        &self,
        pipeline: &Pipeline,
        what: &Operation<'_>,
    ) -> Result<T> {
        let mut connection = self.connection()?;
        pipeline
            .query_async::<T>(&mut connection)
            .await
            .map_err(|error| from_redis(&self.server, what, error))
    }

    /// Runs [`Scripts::release_announced`]: the owner-checked release that
    /// tells waiters watching the lock (Redlock's). Replies its code.
    pub async fn release_announced(
        &self,
        keys: &LockKeys,
        owner: &str,
        what: &Operation<'_>,
    ) -> Result<i64> {
        self.code_of(Scripts::get().release_announced(keys, owner), what)
            .await
    }

    /// Runs a script that replies an integer code.
    async fn code_of(&self, call: ScriptCall<'_>, what: &Operation<'_>) -> Result<i64> {
        let mut connection = self.connection()?;
        call.invoke_async::<i64>(&mut connection)
            .await
            .map_err(|error| from_redis(&self.server, what, error))
    }

    /// Whether `key` exists (`EXISTS`).
    pub async fn exists(&self, key: &str) -> Result<bool> {
        let mut connection = self.connection()?;
        redis::cmd("EXISTS")
            .arg(key)
            .query_async::<bool>(&mut connection)
            .await
            .map_err(|error| from_redis(&self.server, format!("EXISTS {key}"), error))
    }

    /// Deletes every key of a lock, its fence included: for a probe lock
    /// of the caller's own, never for a lock in use.
    pub async fn delete(&self, keys: &LockKeys) -> Result<()> {
        let mut connection = self.connection()?;
        redis::cmd("DEL")
            .arg(&keys.all()[..])
            .query_async::<()>(&mut connection)
            .await
            .map_err(|error| from_redis(&self.server, Operation("delete", keys), error))
    }

    /// Raises the lock's fence to at least `token`; replies the fence after.
    pub async fn raise_fence(&self, keys: &LockKeys, token: u64) -> Result<u64> {
        let what = Operation("write the fencing token back for", keys);
        let fence = self
            .code_of(Scripts::get().raise_fence(keys, token), &what)
            .await?;
        u64::try_from(fence).map_err(|_| unexpected_reply(&self.server, &what, fence))
    }

    /// Fails a write that fewer than `min_replicas` replicas acknowledged;
    /// a grant is given back first (it was never reported held).
    pub(crate) async fn require_replicas(
        &self,
        keys: &LockKeys,
        owner: &str,
        acknowledged: u32,
        what: &Operation<'_>,
        give_back: GiveBack,
    ) -> Result<()> {
        let required = self.options.min_replicas;
        if acknowledged >= required {
            return Ok(());
        }
        let outcome = match give_back {
            GiveBack::Nothing => "",
            GiveBack::Grant => {
                let released = repeat::until_answered(Instant::now() + REPEAT_FOR, || {
                    self.release_script(keys, owner, what)
                })
                .await;
                if released.outcome.is_ok() {
                    "; the grant was released"
                } else {
                    "; releasing the grant failed too, it expires at its TTL"
                }
            }
        };
        Err(Error::new(
            ErrorKind::Unavailable,
            BACKEND,
            format!(
                "{}: {what}: only {acknowledged} of the required {required} replicas \
                 acknowledged within {:?}{outcome}",
                self.server, self.options.replica_timeout
            ),
        ))
    }

    /// Runs the owner-checked release script: its reply code.
    pub async fn release_script(
        &self,
        keys: &LockKeys,
        owner: &str,
        what: &Operation<'_>,
    ) -> Result<i64> {
        self.code_of(Scripts::get().release(keys, owner), what)
            .await
    }

    /// Takes `owner` out of the queue and passes on a lock handed to it.
    pub async fn leave(&self, keys: &LockKeys, owner: &str) -> Result<()> {
        let what = Operation("leave the queue of", keys);
        self.code_of(Scripts::get().leave(keys, owner), &what)
            .await
            .map(drop)
    }

    /// Maps the reply of an owner-checked script (release, extend) to a
    /// result: `NotHeld`, saying why, unless the owner held the lock.
    pub fn owner_check(&self, code: i64, what: &Operation<'_>) -> Result<()> {
        let why = match OwnerCheck::decode(code) {
            Some(OwnerCheck::Done) => return Ok(()),
            Some(OwnerCheck::Free) => "it expired and nobody holds it",
            Some(OwnerCheck::Taken) => "it expired and another owner holds it now",
            None => return Err(unexpected_reply(&self.server, what, code)),
        };
        Err(Error::not_held(BACKEND, what.0, lock_name(what.1), why).at(&self.server))
    }
}

/// Refuses the parts of a URL the driver would silently ignore, and
/// `#insecure`: a user who wrote them meant something lockkit would not do.
fn check_url(url: &str) -> Result<()> {
    let refuse = |why: String| {
        Err(Error::new(
            ErrorKind::Config,
            BACKEND,
            format!("url: {why}"),
        ))
    };
    // What does not parse is left to the driver, whose error says so.
    let Some(parsed) = redis::parse_redis_url(url) else {
        return Ok(());
    };
    let socket = parsed.scheme().ends_with("unix");
    if socket && (!parsed.username().is_empty() || parsed.password().is_some()) {
        return refuse(
            "a Unix-socket URL takes its user and password as ?user=…&pass=…; the driver \
             would ignore the user:password@ part and connect as the default user"
                .to_owned(),
        );
    }
    if parsed.fragment() == Some("insecure") {
        return refuse(
            "#insecure (TLS without checking the server's certificate) is not supported: \
             anyone on the path could answer for the server"
                .to_owned(),
        );
    }
    let known: &[&str] = if socket {
        &["db", "user", "pass", "protocol"]
    } else {
        &["protocol"]
    };
    let mut after_secret = false;
    for (key, _) in parsed.query_pairs() {
        if known.contains(&key.as_ref()) {
            after_secret = key == "pass";
            continue;
        }
        if after_secret {
            return refuse(
                "the parameter after `pass` is not one the driver reads (not shown: it may be \
                 part of the password); percent-encode `&` in it as %26"
                    .to_owned(),
            );
        }
        let hint = if key == "db" {
            " (a redis:// URL names its database in the path: redis://host:6379/3)"
        } else {
            ""
        };
        return refuse(format!(
            "unknown parameter `{key}`{hint}; this form reads {}",
            known.join(", ")
        ));
    }
    Ok(())
}

/// What a write that too few replicas acknowledged leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveBack {
    /// An extension stays on the primary; the lease keeps its old bound.
    Nothing,
    /// A grant is released: it was never reported held.
    Grant,
}

/// What an error message says was being done: ``acquire `billing:42` ``.
#[derive(Debug)]
pub struct Operation<'a>(pub &'static str, pub &'a LockKeys);

impl fmt::Display for Operation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}`", self.0, lock_name(self.1))
    }
}

/// The lock's name, recovered from its key for messages.
pub fn lock_name(keys: &LockKeys) -> &str {
    let lock = keys.lock();
    let start = lock.find('{').map_or(0, |open| open + 1);
    &lock[start..lock.len().saturating_sub(1)]
}

/// A TTL in milliseconds, as `PX` and `PEXPIRE` take it: rounded up, so a
/// sub-millisecond TTL never becomes `PX 0` (an error).
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}
