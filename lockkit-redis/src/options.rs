//! The Redis backend's settings beyond its URL.

use std::time::Duration;

use lockkit_core::{redact_url, Error, ErrorKind, Result, DEFAULT_NAMESPACE};
use serde::Deserialize;

/// How long a waiter keeps its place in the queue without renewing it. A
/// waiter renews every third of this while it waits, so a waiter that dies
/// holds the queue up for at most this long — unless a release hands it the
/// lock within that time: then the lock stays held until that waiter's TTL
/// runs out, as when a holder dies.
pub const QUEUE_PLACE: Duration = Duration::from_secs(2);

/// Settings of a [`RedisBackend`](crate::RedisBackend).
///
/// ```
/// use std::time::Duration;
/// use lockkit_redis::RedisOptions;
///
/// let options = RedisOptions::new()
///     .namespace("billing")
///     .min_replicas(1)
///     .replica_timeout(Duration::from_millis(50));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    pub(crate) namespace: String,
    pub(crate) min_replicas: u32,
    pub(crate) replica_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) allow_eviction: bool,
}

/// The `[redis]` section of a lockkit configuration: the Redis backend's
/// settings beyond its URL and namespace, read from TOML, JSON or
/// `LOCKKIT_REDIS_<FIELD>` variables by the `lockkit` facade. Every field
/// is optional there; its default is the one written here. Unknown fields
/// are refused. Durations are written with their unit (`"100ms"`).
///
/// ```toml
/// [redis]
/// min_replicas = 1
/// replica_timeout = "50ms"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// See [`RedisOptions::min_replicas`]; default 0 (no `WAIT`).
    pub min_replicas: u32,
    /// See [`RedisOptions::replica_timeout`]; default 100 ms.
    #[serde(deserialize_with = "lockkit_core::settings::duration")]
    pub replica_timeout: Duration,
    /// See [`RedisOptions::response_timeout`]; default 2 s.
    #[serde(deserialize_with = "lockkit_core::settings::duration")]
    pub response_timeout: Duration,
    /// See [`RedisOptions::connect_timeout`]; default 2 s.
    #[serde(deserialize_with = "lockkit_core::settings::duration")]
    pub connect_timeout: Duration,
    /// See [`RedisOptions::allow_eviction`]; default false.
    pub allow_eviction: bool,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            min_replicas: 0,
            replica_timeout: Duration::from_millis(100),
            response_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            allow_eviction: false,
        }
    }
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self::from_config(DEFAULT_NAMESPACE, &RedisConfig::default())
    }
}

impl RedisOptions {
    /// The options of a configuration: its namespace and `[redis]` section.
    pub fn from_config(namespace: impl Into<String>, config: &RedisConfig) -> Self {
        Self {
            namespace: namespace.into(),
            min_replicas: config.min_replicas,
            replica_timeout: config.replica_timeout,
            response_timeout: config.response_timeout,
            connect_timeout: config.connect_timeout,
            allow_eviction: config.allow_eviction,
        }
    }

    /// The defaults: namespace `lockkit`, no replica acknowledgement, 2 s
    /// to connect and 2 s for a reply.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key prefix; locks of different namespaces never meet. It may not
    /// contain `{` or `}`, which would move the keys' hash tag.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// After each grant and extension, waits (Redis `WAIT`) until this many
    /// replicas have it, at most [`replica_timeout`](Self::replica_timeout);
    /// with fewer, the grant is released and the acquire fails with
    /// [`Unavailable`](ErrorKind::Unavailable) (an extension fails the same
    /// way, and the lease keeps its old bound).
    ///
    /// This closes most of the failover window in which a promoted replica
    /// that never received a grant grants the lock again. It does not close
    /// all of it: replication stays asynchronous, `WAIT` does not make a
    /// write durable, and the replica that acknowledged may not be the one
    /// promoted. `WAIT` holds the backend's shared connection while it
    /// waits, so a lagging replica slows every lock of this backend by up to
    /// `replica_timeout`. `0` (the default) skips it.
    pub fn min_replicas(mut self, replicas: u32) -> Self {
        self.min_replicas = replicas;
        self
    }

    /// How long `WAIT` may take for [`min_replicas`](Self::min_replicas); default 100 ms.
    pub fn replica_timeout(mut self, timeout: Duration) -> Self {
        self.replica_timeout = timeout;
        self
    }

    /// How long a command may wait for its reply before it fails with
    /// [`Unavailable`](ErrorKind::Unavailable); default 2 s. A paused or
    /// unreachable server costs at most this.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Accepts a server whose `maxmemory-policy` may evict keys (anything
    /// but `noeviction`; the `volatile-*` policies too, since lock keys carry
    /// a TTL). Off by default, and `connect` refuses such a server: under
    /// memory pressure it may delete a held lock's key and grant the lock
    /// again. Turn it on only for a server that never reaches `maxmemory`.
    pub fn allow_eviction(mut self, allow: bool) -> Self {
        self.allow_eviction = allow;
        self
    }

    /// How long one connection attempt may take; default 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Refuses settings that cannot work, naming the field.
    pub(crate) fn validate(&self) -> Result<()> {
        lockkit_core::check_namespace(&self.namespace, "redis")?;
        if self.namespace.contains(['{', '}']) {
            return Err(config_error(format!(
                "namespace `{}` contains `{{` or `}}`, which would move the keys' hash tag",
                redact_url(&self.namespace)
            )));
        }
        lockkit_core::check_timeouts(
            &[
                ("response_timeout", self.response_timeout),
                ("connect_timeout", self.connect_timeout),
            ],
            "redis",
        )?;
        if self.min_replicas > 0 {
            if self.replica_timeout.is_zero() {
                // WAIT 0 means "wait forever" to Redis: refuse rather than hang.
                return Err(config_error(
                    "replica_timeout must be greater than zero when min_replicas is set",
                ));
            }
            if self.replica_timeout >= self.response_timeout {
                return Err(config_error(format!(
                    "replica_timeout ({:?}) must be shorter than response_timeout ({:?}), \
                     or every WAIT would time out as an unreachable server",
                    self.replica_timeout, self.response_timeout
                )));
            }
        }
        Ok(())
    }
}

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, "redis", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        RedisOptions::new().validate().unwrap();
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (RedisOptions::new().namespace(""), "namespace"),
            (RedisOptions::new().namespace("a{b"), "namespace"),
            (
                RedisOptions::new().response_timeout(Duration::ZERO),
                "response_timeout",
            ),
            (
                RedisOptions::new().connect_timeout(Duration::ZERO),
                "connect_timeout",
            ),
            (
                RedisOptions::new()
                    .min_replicas(1)
                    .replica_timeout(Duration::ZERO),
                "replica_timeout",
            ),
            (
                RedisOptions::new()
                    .min_replicas(1)
                    .replica_timeout(Duration::from_secs(5)),
                "replica_timeout",
            ),
        ];
        for (options, field) in cases {
            let error = options.validate().unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config);
            assert!(error.message().starts_with(field), "{error}");
        }
    }
}
