//! The Redlock backend's settings beyond its URL.

use std::time::Duration;

use lockkit_core::{Error, ErrorKind, Result, DEFAULT_NAMESPACE};
use lockkit_redis::RedisOptions;
use serde::Deserialize;

use crate::BACKEND;

/// How many node timeouts the shortest TTL must span: an acquire may take
/// one for the grants and one for the fencing token's write-back, and the
/// lease must still be worth having after both.
pub const TTL_PER_NODE_TIMEOUT: u32 = 5;

/// The shortest `node_timeout` accepted: Redis keeps TTLs in
/// milliseconds, and the shortest TTL (5 node timeouts) must leave a
/// validity beyond the drift allowance.
pub const MIN_NODE_TIMEOUT: Duration = Duration::from_millis(2);

/// The fixed part of the drift allowance, beside `drift_factor` × TTL (the
/// distlock spec's "+ 2 milliseconds", for Redis' millisecond expiry).
pub const DRIFT_FLOOR: Duration = Duration::from_millis(2);

/// Settings of a [`RedlockBackend`](crate::RedlockBackend).
///
/// ```
/// use std::time::Duration;
/// use lockkit_redlock::RedlockOptions;
///
/// let options = RedlockOptions::new()
///     .namespace("billing")
///     .node_timeout(Duration::from_millis(20));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RedlockOptions {
    pub(crate) namespace: String,
    pub(crate) node_timeout: Duration,
    pub(crate) retry_jitter: Duration,
    pub(crate) drift_factor: f64,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) allow_eviction: bool,
}

/// The `[redlock]` section of a lockkit configuration: the Redlock
/// backend's settings beyond its URL and namespace, read from TOML, JSON or
/// `LOCKKIT_REDLOCK_<FIELD>` variables by the `lockkit` facade. Every field
/// is optional there; its default is the one written here. Unknown fields
/// are refused. Durations are written with their unit (`"50ms"`).
///
/// ```toml
/// [redlock]
/// node_timeout = "50ms"
/// drift_factor = 0.01
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedlockConfig {
    /// See [`RedlockOptions::node_timeout`]; default 50 ms.
    #[serde(deserialize_with = "lockkit_core::settings::duration")]
    pub node_timeout: Duration,
    /// See [`RedlockOptions::retry_jitter`]; default 2 ms.
    #[serde(deserialize_with = "lockkit_core::settings::duration")]
    pub retry_jitter: Duration,
    /// See [`RedlockOptions::drift_factor`]; default 0.01.
    pub drift_factor: f64,
    /// See [`RedlockOptions::connect_timeout`]; default 2 s.
    #[serde(deserialize_with = "lockkit_core::settings::duration")]
    pub connect_timeout: Duration,
    /// See [`RedlockOptions::response_timeout`]; default 2 s.
    #[serde(deserialize_with = "lockkit_core::settings::duration")]
    pub response_timeout: Duration,
    /// See [`RedlockOptions::allow_eviction`]; default false.
    pub allow_eviction: bool,
}

impl Default for RedlockConfig {
    fn default() -> Self {
        Self {
            node_timeout: Duration::from_millis(50),
            retry_jitter: Duration::from_millis(2),
            drift_factor: 0.01,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            allow_eviction: false,
        }
    }
}

impl Default for RedlockOptions {
    fn default() -> Self {
        Self::from_config(DEFAULT_NAMESPACE, &RedlockConfig::default())
    }
}

impl RedlockOptions {
    /// The options of a configuration: its namespace and `[redlock]` section.
    pub fn from_config(namespace: impl Into<String>, config: &RedlockConfig) -> Self {
        Self {
            namespace: namespace.into(),
            node_timeout: config.node_timeout,
            retry_jitter: config.retry_jitter,
            drift_factor: config.drift_factor,
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            allow_eviction: config.allow_eviction,
        }
    }

    /// The defaults: namespace `lockkit`, 50 ms per node, up to 2 ms of
    /// jitter, drift factor 0.01, 2 s to connect and for a late reply.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key prefix on every node; locks of different namespaces never
    /// meet. It may not contain `{` or `}`, which would move the keys' hash tag.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How long an acquire, extension or release waits for each node's
    /// answer (default 50 ms, at least [`MIN_NODE_TIMEOUT`]), counted from
    /// the first node's answer (from the send while none has answered): a
    /// node that has not answered by then counts as failed for this call,
    /// so a paused or unreachable node costs each call at most about this
    /// much. The distlock spec asks for a timeout much shorter than the
    /// TTL; TTLs under 5 × this are refused.
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// The most a waiter waits, at random, between a release's
    /// announcement and its next attempt (default 2 ms), so waiters woken
    /// together do not split the nodes' votes between them. After a split
    /// vote the waiter draws from four times this. Zero retries at once.
    pub fn retry_jitter(mut self, jitter: Duration) -> Self {
        self.retry_jitter = jitter;
        self
    }

    /// How fast the nodes' clocks may run ahead of this client's, as a
    /// fraction (default 0.01, the distlock spec's): a grant's validity is
    /// TTL − elapsed − (drift_factor × TTL + 2 ms). From 0 up to (not
    /// including) 0.5.
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.drift_factor = factor;
        self
    }

    /// How long connecting to each node may take; default 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a node's reply is awaited at all (default 2 s): at
    /// connect, and in the background for a reply that came too late for
    /// [`node_timeout`](Self::node_timeout) — a late grant is then given back.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Accepts nodes whose `maxmemory-policy` may evict keys; see
    /// [`RedisOptions::allow_eviction`]. Off by default.
    pub fn allow_eviction(mut self, allow: bool) -> Self {
        self.allow_eviction = allow;
        self
    }

    /// The drift allowance of a grant for `ttl`.
    pub(crate) fn drift(&self, ttl: Duration) -> Duration {
        DRIFT_FLOOR + ttl.mul_f64(self.drift_factor)
    }

    /// The settings of each node's single-Redis backend, whose fair queue
    /// is the waiters' gate: its keys live under `<namespace>:gate`.
    pub(crate) fn gate(&self) -> RedisOptions {
        RedisOptions::new()
            .namespace(self.gate_namespace())
            .connect_timeout(self.connect_timeout)
            .response_timeout(self.response_timeout)
            .allow_eviction(self.allow_eviction)
    }

    /// The namespace of the gates' keys.
    pub(crate) fn gate_namespace(&self) -> String {
        format!("{}:gate", self.namespace)
    }

    /// Checks every field; a refusal is a `Config` error naming the field.
    pub(crate) fn validate(&self) -> Result<()> {
        lockkit_core::check_namespace(&self.namespace, BACKEND)?;
        let refuse = |why: String| Err(Error::new(ErrorKind::Config, BACKEND, why));
        if self.namespace.contains(['{', '}']) {
            return refuse(format!(
                "namespace `{}` contains `{{` or `}}`, which would move the keys' hash tag",
                self.namespace
            ));
        }
        if self.namespace.ends_with(":gate") {
            return refuse(format!(
                "namespace `{}` ends in `:gate`: its keys would be the gates of namespace `{}`",
                self.namespace,
                &self.namespace[..self.namespace.len() - ":gate".len()]
            ));
        }
        lockkit_core::check_timeouts(
            &[
                ("node_timeout", self.node_timeout),
                ("connect_timeout", self.connect_timeout),
                ("response_timeout", self.response_timeout),
            ],
            BACKEND,
        )?;
        if self.node_timeout < MIN_NODE_TIMEOUT {
            return refuse(format!(
                "node_timeout must be at least {MIN_NODE_TIMEOUT:?}, got {:?}: Redis keeps TTLs \
                 in milliseconds, and the shortest TTL (5 × node_timeout) must outlast the \
                 drift allowance",
                self.node_timeout
            ));
        }
        if self.node_timeout > self.response_timeout {
            return refuse(format!(
                "node_timeout ({:?}) must not be longer than response_timeout ({:?}), which \
                 bounds every reply",
                self.node_timeout, self.response_timeout
            ));
        }
        if self.retry_jitter > Duration::from_secs(1) {
            return refuse(format!(
                "retry_jitter {:?} is longer than the most accepted, 1s: waiters would sit \
                 idle by a free lock",
                self.retry_jitter
            ));
        }
        if !(0.0..0.5).contains(&self.drift_factor) {
            return refuse(format!(
                "drift_factor must be at least 0 and below 0.5, got {}",
                self.drift_factor
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(RedlockOptions::new().validate().is_ok());
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (RedlockOptions::new().namespace(""), "namespace"),
            (RedlockOptions::new().namespace("a{b"), "namespace"),
            (RedlockOptions::new().namespace("app:gate"), "namespace"),
            (
                RedlockOptions::new().node_timeout(Duration::from_micros(1500)),
                "node_timeout",
            ),
            (
                RedlockOptions::new().node_timeout(Duration::ZERO),
                "node_timeout",
            ),
            (
                RedlockOptions::new().node_timeout(Duration::from_secs(3)),
                "node_timeout",
            ),
            (
                RedlockOptions::new().connect_timeout(Duration::ZERO),
                "connect_timeout",
            ),
            (
                RedlockOptions::new().retry_jitter(Duration::from_secs(2)),
                "retry_jitter",
            ),
            (RedlockOptions::new().drift_factor(-0.1), "drift_factor"),
            (RedlockOptions::new().drift_factor(0.5), "drift_factor"),
            (RedlockOptions::new().drift_factor(f64::NAN), "drift_factor"),
        ];
        for (options, field) in cases {
            let refused = options.validate().err();
            assert!(
                refused
                    .as_ref()
                    .is_some_and(|error| error.kind() == ErrorKind::Config
                        && error.message().contains(field)),
                "{field}: {options:?} gave {refused:?}"
            );
        }
    }

    #[test]
    fn the_drift_allowance_is_the_specs() {
        let options = RedlockOptions::new();
        assert_eq!(
            options.drift(Duration::from_secs(10)),
            Duration::from_millis(102)
        );
    }
}
