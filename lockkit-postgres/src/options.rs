//! The PostgreSQL backend's settings beyond its URL.

use std::time::Duration;

use lockkit_core::{redact_url, Error, ErrorKind, Result, DEFAULT_NAMESPACE};
use serde::Deserialize;

use crate::error::BACKEND;

/// The most session connections a backend may hold locks on.
pub const MAX_SESSIONS: usize = 4;

/// Settings of a [`PostgresBackend`](crate::PostgresBackend).
///
/// ```
/// use lockkit_postgres::PostgresOptions;
///
/// let options = PostgresOptions::new()
///     .namespace("billing")
///     .sessions(2)
///     .max_waiters(32);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    pub(crate) namespace: String,
    pub(crate) schema: String,
    pub(crate) sessions: usize,
    pub(crate) max_waiters: usize,
    pub(crate) max_transactions: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
}

/// The `[postgres]` section of a lockkit configuration: the PostgreSQL
/// backend's settings beyond its URL and namespace, read from TOML, JSON or
/// `LOCKKIT_POSTGRES_<FIELD>` variables by the `lockkit` facade. Every
/// field is optional there; its default is the one written here. Unknown
/// fields are refused. Durations are written with their unit (`"5s"`).
///
/// ```toml
/// [postgres]
/// sessions = 2
/// max_waiters = 32
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// See [`PostgresOptions::sessions`]; default 2, at most [`MAX_SESSIONS`].
    pub sessions: usize,
    /// See [`PostgresOptions::max_waiters`]; default 16.
    pub max_waiters: usize,
    /// See [`PostgresOptions::max_transactions`]; default 8.
    pub max_transactions: usize,
    /// See [`PostgresOptions::schema`]; default `lockkit`.
    pub schema: String,
    /// See [`PostgresOptions::connect_timeout`]; default 5 s.
    #[serde(deserialize_with = "lockkit_core::settings::duration")]
    pub connect_timeout: Duration,
    /// See [`PostgresOptions::response_timeout`]; default 5 s.
    #[serde(deserialize_with = "lockkit_core::settings::duration")]
    pub response_timeout: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            sessions: 2,
            max_waiters: 16,
            max_transactions: 8,
            schema: "lockkit".to_owned(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self::from_config(DEFAULT_NAMESPACE, &PostgresConfig::default())
    }
}

impl PostgresOptions {
    /// The options of a configuration: its namespace and `[postgres]` section.
    pub fn from_config(namespace: impl Into<String>, config: &PostgresConfig) -> Self {
        Self {
            namespace: namespace.into(),
            schema: config.schema.clone(),
            sessions: config.sessions,
            max_waiters: config.max_waiters,
            max_transactions: config.max_transactions,
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
        }
    }

    /// The defaults: namespace `lockkit`, schema `lockkit`, 2 session
    /// connections, up to 16 waiter and 8 transaction connections, 5 s to connect.
    pub fn new() -> Self {
        Self::default()
    }

    /// The namespace hashed into every key; locks of different namespaces
    /// never meet (except by a 2⁻⁶⁴ collision, see [`lock_key`](crate::lock_key)).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The schema holding the fencing sequence (`<schema>.fence`); created on
    /// first use if missing. Default `lockkit`.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// How many connections hold session locks, 1 to [`MAX_SESSIONS`]
    /// (default 2). Any number of locks share them: queries pipeline on each.
    pub fn sessions(mut self, sessions: usize) -> Self {
        self.sessions = sessions;
        self
    }

    /// How many acquires may wait in the server's queue at once (default
    /// 16). A waiting acquire blocks a connection of its own, and the lock
    /// it gets stays on that connection until released; acquires past this
    /// bound wait in the client, in arrival order, for a connection.
    pub fn max_waiters(mut self, waiters: usize) -> Self {
        self.max_waiters = waiters;
        self
    }

    /// How many [`LockedTransaction`](crate::LockedTransaction)s may be open
    /// at once (default 8); each holds a connection until it ends.
    pub fn max_transactions(mut self, transactions: usize) -> Self {
        self.max_transactions = transactions;
        self
    }

    /// How long one connection attempt may take; default 5 s. A URL's own
    /// `connect_timeout` wins.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a statement that answers at once — a try, a release, an
    /// extend's check — may go unanswered; default 5 s. Past it the server
    /// is taken for gone: that connection is closed (the server frees its
    /// locks once it notices) and every lease on it turns Lost, so a paused
    /// or unreachable server costs an operation at most this long. A wait
    /// in the server's queue is bounded by the acquire's own deadline.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Checks every field; a refusal is a `Config` error naming the field.
    pub(crate) fn validate(&self) -> Result<()> {
        lockkit_core::check_namespace(&self.namespace, BACKEND)?;
        let refuse = |why: String| Err(Error::new(ErrorKind::Config, BACKEND, why));
        if self.schema.starts_with("pg_") || self.schema == "information_schema" {
            return Err(Error::new(
                ErrorKind::Config,
                BACKEND,
                format!(
                    "schema `{}` belongs to PostgreSQL itself (pg_*, information_schema); \
                     name a schema of the application's",
                    redact_url(&self.schema)
                ),
            ));
        }
        if !valid_identifier(&self.schema) {
            return refuse(format!(
                "schema `{}` must be 1 to 63 lowercase ASCII letters, digits or `_`, not starting with a digit",
                redact_url(&self.schema)
            ));
        }
        if !(1..=MAX_SESSIONS).contains(&self.sessions) {
            return refuse(format!(
                "sessions must be 1 to {MAX_SESSIONS}, got {}",
                self.sessions
            ));
        }
        if self.max_waiters == 0 {
            return refuse("max_waiters must be at least 1".to_owned());
        }
        if self.max_transactions == 0 {
            return refuse("max_transactions must be at least 1".to_owned());
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

/// A schema name that needs no quoting: it goes into SQL text as is.
fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars
            .next()
            .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        PostgresOptions::new().validate().unwrap();
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (PostgresOptions::new().namespace(""), "namespace"),
            (PostgresOptions::new().schema("Lock-Kit"), "schema"),
            (PostgresOptions::new().schema("1abc"), "schema"),
            (PostgresOptions::new().schema("pg_temp"), "schema"),
            (
                PostgresOptions::new().schema("information_schema"),
                "schema",
            ),
            (PostgresOptions::new().schema(""), "schema"),
            (PostgresOptions::new().schema("a".repeat(64)), "schema"),
            (PostgresOptions::new().sessions(0), "sessions"),
            (
                PostgresOptions::new().sessions(MAX_SESSIONS + 1),
                "sessions",
            ),
            (PostgresOptions::new().max_waiters(0), "max_waiters"),
            (
                PostgresOptions::new().max_transactions(0),
                "max_transactions",
            ),
            (
                PostgresOptions::new().connect_timeout(Duration::ZERO),
                "connect_timeout",
            ),
            (
                PostgresOptions::new().response_timeout(Duration::ZERO),
                "response_timeout",
            ),
        ];
        for (options, field) in cases {
            let error = options.validate().unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{field}");
            assert!(error.message().contains(field), "{field}: {error}");
        }
    }
}
