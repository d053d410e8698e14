//! The etcd backend's settings beyond its URL.

use std::time::Duration;

use lockkit_core::{Error, ErrorKind, Result, DEFAULT_NAMESPACE};
use serde::Deserialize;

use crate::error::BACKEND;

/// The shortest session lease TTL accepted.
pub const MIN_SESSION_TTL: Duration = Duration::from_secs(2);

/// The longest lease TTL etcd grants (its `MaxLeaseTTL`, 9,000,000,000 s).
const MAX_SESSION_TTL: Duration = Duration::from_secs(9_000_000_000);

/// Settings of an [`EtcdBackend`](crate::EtcdBackend).
///
/// ```
/// use std::time::Duration;
/// use lockkit_etcd::EtcdOptions;
///
/// let options = EtcdOptions::new()
///     .namespace("billing")
///     .session_ttl(Duration::from_secs(15));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    pub(crate) namespace: String,
    pub(crate) session_ttl: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) prefer_leader: bool,
}

/// The `[etcd]` section of a lockkit configuration: the etcd backend's
/// settings beyond its URL and namespace, read from TOML, JSON or
/// `LOCKKIT_ETCD_<FIELD>` variables by the `lockkit` facade. Every field is
/// optional there; its default is the one written here. Unknown fields are
/// refused. Durations are written with their unit (`"10s"`).
///
/// ```toml
/// [etcd]
/// session_ttl = "10s"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdConfig {
    /// See [`EtcdOptions::session_ttl`]; default 10 s, at least 2 s.
    #[serde(deserialize_with = "lockkit_core::settings::duration")]
    pub session_ttl: Duration,
    /// See [`EtcdOptions::connect_timeout`]; default 5 s.
    #[serde(deserialize_with = "lockkit_core::settings::duration")]
    pub connect_timeout: Duration,
    /// See [`EtcdOptions::response_timeout`]; default 5 s.
    #[serde(deserialize_with = "lockkit_core::settings::duration")]
    pub response_timeout: Duration,
    /// See [`EtcdOptions::prefer_leader`]; default true.
    pub prefer_leader: bool,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            session_ttl: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            prefer_leader: true,
        }
    }
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self::from_config(DEFAULT_NAMESPACE, &EtcdConfig::default())
    }
}

impl EtcdOptions {
    /// The options of a configuration: its namespace and `[etcd]` section.
    pub fn from_config(namespace: impl Into<String>, config: &EtcdConfig) -> Self {
        Self {
            namespace: namespace.into(),
            session_ttl: config.session_ttl,
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            prefer_leader: config.prefer_leader,
        }
    }

    /// The defaults: namespace `lockkit`, a 10 s session lease, 5 s to
    /// connect and to answer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first segment of every lock key (`<namespace>/<name>/<lease>`);
    /// locks of different namespaces never meet.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The TTL of the session lease every lock of this backend is attached
    /// to, whole seconds, at least [`MIN_SESSION_TTL`] (default 10 s). It
    /// is kept alive every third of it; a client that stops (a crash, a
    /// pause, a cut network) loses its locks at the server this long after
    /// its last keep-alive, and its leases report Lost by then.
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
        self
    }

    /// How long connecting to a member may take; default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a request — an acquire's transaction, a release, a
    /// check — may go unanswered before it fails `Unavailable`; default
    /// 5 s. A wait for a lock held by someone else is bounded by the
    /// acquire's own deadline instead.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Whether requests go to the member that leads the cluster (default
    /// true). A write sent to a follower is forwarded to the leader, and a
    /// follower delivers a watch event only after it learns of the commit:
    /// each adds a hop to a handoff. At connect the backend asks which
    /// member leads and, if the URL lists it, sends everything there; the
    /// first request that fails before an answer spreads it over every
    /// listed member again, for good. With `false`, requests are spread
    /// over every member from the start.
    pub fn prefer_leader(mut self, prefer: bool) -> Self {
        self.prefer_leader = prefer;
        self
    }

    /// Checks every field; a refusal is a `Config` error naming the field.
    pub(crate) fn validate(&self) -> Result<()> {
        lockkit_core::check_namespace(&self.namespace, BACKEND)?;
        let refuse = |why: String| Err(Error::new(ErrorKind::Config, BACKEND, why));
        if self.session_ttl < MIN_SESSION_TTL {
            return refuse(format!(
                "session_ttl must be at least {MIN_SESSION_TTL:?}, got {:?}",
                self.session_ttl
            ));
        }
        if self.session_ttl.subsec_nanos() != 0 {
            return refuse(format!(
                "session_ttl must be whole seconds (etcd leases count seconds), got {:?}",
                self.session_ttl
            ));
        }
        if self.session_ttl > MAX_SESSION_TTL {
            return refuse(format!(
                "session_ttl {:?} is longer than etcd grants (9,000,000,000 s)",
                self.session_ttl
            ));
        }
        lockkit_core::check_timeouts(
            &[
                ("connect_timeout", self.connect_timeout),
                ("response_timeout", self.response_timeout),
            ],
            BACKEND,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() -> Result<()> {
        EtcdOptions::new().validate()
    }

    #[test]
    fn each_bad_field_is_named() -> std::result::Result<(), String> {
        let cases = [
            (EtcdOptions::new().namespace(""), "namespace"),
            (
                EtcdOptions::new().session_ttl(Duration::from_secs(1)),
                "session_ttl",
            ),
            (
                EtcdOptions::new().session_ttl(Duration::from_millis(2500)),
                "session_ttl",
            ),
            (
                EtcdOptions::new().session_ttl(Duration::from_secs(u64::MAX)),
                "session_ttl",
            ),
            (
                EtcdOptions::new().session_ttl(Duration::from_secs(9_000_000_001)),
                "session_ttl",
            ),
            (
                EtcdOptions::new().connect_timeout(Duration::ZERO),
                "connect_timeout",
            ),
            (
                EtcdOptions::new().response_timeout(Duration::ZERO),
                "response_timeout",
            ),
        ];
        for (options, field) in cases {
            let Err(error) = options.validate() else {
                return Err(format!("{field}: accepted"));
            };
            assert_eq!(error.kind(), ErrorKind::Config, "{field}");
            assert!(error.message().contains(field), "{field}: {error}");
        }
        Ok(())
    }
}
