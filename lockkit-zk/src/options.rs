//! The ZooKeeper backend's settings beyond its URL.

use std::time::Duration;

use lockkit_core::{Error, ErrorKind, Result, DEFAULT_NAMESPACE};
use serde::Deserialize;

use crate::error::BACKEND;

/// The shortest session timeout accepted. (A server grants at least two of
/// its ticks, 4 s with its default `tickTime` of 2 s.)
pub const MIN_SESSION_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest session timeout the protocol can ask for (a signed 32-bit
/// count of milliseconds).
const MAX_SESSION_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// Settings of a [`ZkBackend`](crate::ZkBackend).
///
/// ```
/// use std::time::Duration;
/// use lockkit_zk::ZkOptions;
///
/// let options = ZkOptions::new()
///     .namespace("billing")
///     .session_timeout(Duration::from_secs(15));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkOptions {
    pub(crate) namespace: String,
    pub(crate) session_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
}

/// The `[zk]` section of a lockkit configuration: the ZooKeeper backend's
/// settings beyond its URL and namespace, read from TOML, JSON or
/// `LOCKKIT_ZK_<FIELD>` variables by the `lockkit` facade. Every field is
/// optional there; its default is the one written here. Unknown fields are
/// refused. Durations are written with their unit (`"10s"`).
///
/// ```toml
/// [zk]
/// session_timeout = "10s"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZkConfig {
    /// See [`ZkOptions::session_timeout`]; default 10 s.
    #[serde(deserialize_with = "lockkit_core::settings::duration")]
    pub session_timeout: Duration,
    /// See [`ZkOptions::connect_timeout`]; default 5 s.
    #[serde(deserialize_with = "lockkit_core::settings::duration")]
    pub connect_timeout: Duration,
    /// See [`ZkOptions::response_timeout`]; default 5 s.
    #[serde(deserialize_with = "lockkit_core::settings::duration")]
    pub response_timeout: Duration,
}

impl Default for ZkConfig {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for ZkOptions {
    fn default() -> Self {
        Self::from_config(DEFAULT_NAMESPACE, &ZkConfig::default())
    }
}

impl ZkOptions {
    /// The options of a configuration: its namespace and `[zk]` section.
    pub fn from_config(namespace: impl Into<String>, config: &ZkConfig) -> Self {
        Self {
            namespace: namespace.into(),
            session_timeout: config.session_timeout,
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
        }
    }

    /// The defaults: namespace `lockkit`, a 10 s session, 5 s to connect
    /// and to answer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The node under the URL's chroot that every lock lives below
    /// (`/<namespace>/<name>/…`); locks of different namespaces never meet.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The session timeout asked of the ensemble (default 10 s); the
    /// servers grant it within their `minSessionTimeout` and
    /// `maxSessionTimeout` (2 and 20 ticks unless configured), and the
    /// backend uses the one granted. A client that stops (a crash, a
    /// pause, a cut network) loses its locks at the server this long after
    /// it was last heard, and its leases report Lost by then.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// How long establishing the session may take at connect, trying each
    /// server in turn; default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a request — an acquire's create, a release, a check — may
    /// go unanswered before it fails `Unavailable`; default 5 s. A wait
    /// for a lock held by someone else is bounded by the acquire's own
    /// deadline instead.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Checks every field; a refusal is a `Config` error naming the field.
    pub(crate) fn validate(&self) -> Result<()> {
        lockkit_core::check_namespace(&self.namespace, BACKEND)?;
        let refuse = |why: String| Err(Error::new(ErrorKind::Config, BACKEND, why));
        if self.session_timeout < MIN_SESSION_TIMEOUT {
            return refuse(format!(
                "session_timeout must be at least {MIN_SESSION_TIMEOUT:?}, got {:?}",
                self.session_timeout
            ));
        }
        if self.session_timeout > MAX_SESSION_TIMEOUT {
            return refuse(format!(
                "session_timeout {:?} is longer than ZooKeeper's protocol can ask for \
                 ({MAX_SESSION_TIMEOUT:?})",
                self.session_timeout
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
        ZkOptions::new().validate()
    }

    #[test]
    fn each_bad_field_is_named() -> std::result::Result<(), String> {
        let cases = [
            (ZkOptions::new().namespace(""), "namespace"),
            (
                ZkOptions::new().session_timeout(Duration::from_millis(999)),
                "session_timeout",
            ),
            (
                ZkOptions::new().session_timeout(Duration::from_secs(u64::MAX)),
                "session_timeout",
            ),
            (
                ZkOptions::new().connect_timeout(Duration::ZERO),
                "connect_timeout",
            ),
            (
                ZkOptions::new().response_timeout(Duration::ZERO),
                "response_timeout",
            ),
            (
                ZkOptions::new().response_timeout(Duration::MAX),
                "response_timeout",
            ),
            (
                ZkOptions::new().connect_timeout(Duration::MAX),
                "connect_timeout",
            ),
        ];
        for (options, field) in cases {
            let Err(error) = options.validate() else {
                return Err(format!("{field}: accepted"));
            };
            if error.kind() != ErrorKind::Config || !error.message().contains(field) {
                return Err(format!("{field}: {error}"));
            }
        }
        Ok(())
    }
}
