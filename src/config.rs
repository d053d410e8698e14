//! `LockConfig`: which backend, under which namespace, with which guarantees.

use std::fmt;
use std::time::Duration;

use lockkit_core::{
    check_namespace, redact_url, Error, ErrorKind, Result, SafetyClass, DEFAULT_NAMESPACE,
    DEFAULT_TTL,
};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// How an application picks its lock backend: by configuration, not by code.
///
/// Read from TOML ([`from_toml`](Self::from_toml)), JSON
/// ([`from_json`](Self::from_json)) or the environment
/// ([`from_env`](Self::from_env)); unknown fields are refused. `Debug` never
/// prints a password.
///
/// ```toml
/// url = "memory://"
/// namespace = "billing"        # key prefix, default "lockkit"
/// require = "correctness"      # refuse backends weaker than this
/// default_ttl = "30s"          # TTL of acquires that name none
///
/// [redis]                      # read by the redis backend only
/// min_replicas = 1             # WAIT for this many replicas after each grant
/// replica_timeout = "100ms"
///
/// [postgres]                   # read by the postgres backend only
/// sessions = 2                 # connections that hold session locks (1–4)
/// max_waiters = 16             # acquires waiting in the server's queue at once
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockConfig {
    /// Where the locks live: `memory://`, `redis://…` (or another form the
    /// Redis driver accepts: `rediss://`, `redis+unix://`, `unix://`,
    /// `valkey://`, …), `redlock://…`, `postgres://…` (or libpq's keyword
    /// form, `host=… dbname=…`), `etcd://…` or `zk://…`. `Debug` shows it
    /// through [`redact_url`](crate::redact_url).
    pub url: String,
    /// Prefix of every key the backend writes, so applications sharing a
    /// server never see each other's locks.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The weakest safety class the application accepts; `connect` refuses a
    /// backend below it, saying why.
    #[serde(default, deserialize_with = "safety_class")]
    pub require: Option<SafetyClass>,
    /// The TTL of acquires whose options name none.
    #[serde(default = "default_ttl", deserialize_with = "duration")]
    pub default_ttl: Duration,
    /// Settings only the Redis backend reads (`[redis]`).
    #[serde(default)]
    pub redis: RedisConfig,
    /// Settings only the PostgreSQL backend reads (`[postgres]`).
    #[serde(default)]
    pub postgres: PostgresConfig,
}

/// The `[redis]` section: settings only the Redis backend reads. Unset
/// fields keep the backend's defaults (see `lockkit_redis::RedisOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// After each grant and extension, wait until this many replicas have
    /// it; fail the acquire if fewer acknowledge within `replica_timeout`.
    #[serde(default)]
    pub min_replicas: u32,
    /// How long to wait for `min_replicas` (default 100 ms).
    #[serde(default, deserialize_with = "optional_duration")]
    pub replica_timeout: Option<Duration>,
    /// How long a command may wait for its reply (default 2 s).
    #[serde(default, deserialize_with = "optional_duration")]
    pub response_timeout: Option<Duration>,
    /// How long one connection attempt may take (default 2 s).
    #[serde(default, deserialize_with = "optional_duration")]
    pub connect_timeout: Option<Duration>,
    /// Accept a server whose `maxmemory-policy` may evict a held lock's key
    /// (default false: `connect` refuses it).
    #[serde(default)]
    pub allow_eviction: bool,
}

/// The `[postgres]` section: settings only the PostgreSQL backend reads.
/// Unset fields keep the backend's defaults (see
/// `lockkit_postgres::PostgresOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connections that hold session locks, 1 to 4 (default 2); any number
    /// of locks share them.
    #[serde(default)]
    pub sessions: Option<usize>,
    /// Acquires that may wait in the server's queue at once, each on a
    /// connection of its own (default 16).
    #[serde(default)]
    pub max_waiters: Option<usize>,
    /// Locked transactions that may be open at once (default 8).
    #[serde(default)]
    pub max_transactions: Option<usize>,
    /// The schema of the fencing sequence (default `lockkit`).
    #[serde(default)]
    pub schema: Option<String>,
    /// How long one connection attempt may take (default 5 s).
    #[serde(default, deserialize_with = "optional_duration")]
    pub connect_timeout: Option<Duration>,
    /// How long a statement that answers at once (try, release, extend)
    /// may go unanswered before its connection is taken for gone (default 5 s).
    #[serde(default, deserialize_with = "optional_duration")]
    pub response_timeout: Option<Duration>,
}

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_owned()
}

fn default_ttl() -> Duration {
    DEFAULT_TTL
}

impl LockConfig {
    /// A configuration for `url` with every other field at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            namespace: default_namespace(),
            require: None,
            default_ttl: DEFAULT_TTL,
            redis: RedisConfig::default(),
            postgres: PostgresConfig::default(),
        }
    }

    /// Sets the namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Refuses backends below `safety`.
    pub fn require(mut self, safety: SafetyClass) -> Self {
        self.require = Some(safety);
        self
    }

    /// Sets the default TTL.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Sets the `[redis]` section.
    pub fn redis(mut self, redis: RedisConfig) -> Self {
        self.redis = redis;
        self
    }

    /// Sets the `[postgres]` section.
    pub fn postgres(mut self, postgres: PostgresConfig) -> Self {
        self.postgres = postgres;
        self
    }

    /// Parses a TOML document; errors name the offending field.
    pub fn from_toml(text: &str) -> Result<Self> {
        let document = toml::Deserializer::parse(text)
            .map_err(|error| config_error(format!("TOML: {}", error.message())))?;
        serde_path_to_error::deserialize(document)
            .map_err(|error| field_error(error.path(), error.inner().message()))
    }

    /// Parses a JSON document; errors name the offending field.
    pub fn from_json(text: &str) -> Result<Self> {
        let mut document = serde_json::Deserializer::from_str(text);
        let config: Self = serde_path_to_error::deserialize(&mut document)
            .map_err(|error| field_error(error.path(), &error.inner().to_string()))?;
        document
            .end()
            .map_err(|error| config_error(format!("JSON: {}", hide_quoted(&error.to_string()))))?;
        Ok(config)
    }

    /// Reads `LOCKKIT_URL` (required), `LOCKKIT_NAMESPACE`, `LOCKKIT_REQUIRE`,
    /// `LOCKKIT_DEFAULT_TTL`, the `[redis]` settings `LOCKKIT_REDIS_MIN_REPLICAS`,
    /// `LOCKKIT_REDIS_REPLICA_TIMEOUT`, `LOCKKIT_REDIS_RESPONSE_TIMEOUT`,
    /// `LOCKKIT_REDIS_CONNECT_TIMEOUT` and `LOCKKIT_REDIS_ALLOW_EVICTION`, and
    /// the `[postgres]` settings `LOCKKIT_POSTGRES_SESSIONS`,
    /// `LOCKKIT_POSTGRES_MAX_WAITERS`, `LOCKKIT_POSTGRES_MAX_TRANSACTIONS`,
    /// `LOCKKIT_POSTGRES_SCHEMA`, `LOCKKIT_POSTGRES_CONNECT_TIMEOUT` and
    /// `LOCKKIT_POSTGRES_RESPONSE_TIMEOUT` from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), reading variables through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let url = var("LOCKKIT_URL").ok_or_else(|| {
            config_error("LOCKKIT_URL is not set; it names the lock backend, e.g. memory://")
        })?;
        let mut config = Self::new(url);
        if let Some(namespace) = var("LOCKKIT_NAMESPACE") {
            config.namespace = namespace;
        }
        if let Some(require) = var("LOCKKIT_REQUIRE") {
            config.require = Some(require.parse().map_err(|_: Error| {
                config_error(format!(
                    "LOCKKIT_REQUIRE: expected `efficiency` or `correctness`, got `{}`",
                    redact_url(&require)
                ))
            })?);
        }
        if let Some(ttl) = var("LOCKKIT_DEFAULT_TTL") {
            config.default_ttl = parse_duration(&ttl)
                .map_err(|why| config_error(format!("LOCKKIT_DEFAULT_TTL: {why}")))?;
        }
        if let Some(allow) = var("LOCKKIT_REDIS_ALLOW_EVICTION") {
            config.redis.allow_eviction = allow.trim().parse().map_err(|_| {
                config_error(format!(
                    "LOCKKIT_REDIS_ALLOW_EVICTION: expected true or false, got `{}`",
                    redact_url(&allow)
                ))
            })?;
        }
        if let Some(replicas) = var("LOCKKIT_REDIS_MIN_REPLICAS") {
            config.redis.min_replicas = replicas.trim().parse().map_err(|_| {
                config_error(format!(
                    "LOCKKIT_REDIS_MIN_REPLICAS: expected a whole number of replicas, got `{}`",
                    redact_url(&replicas)
                ))
            })?;
        }
        for (name, field) in [
            (
                "LOCKKIT_REDIS_REPLICA_TIMEOUT",
                &mut config.redis.replica_timeout,
            ),
            (
                "LOCKKIT_REDIS_RESPONSE_TIMEOUT",
                &mut config.redis.response_timeout,
            ),
            (
                "LOCKKIT_REDIS_CONNECT_TIMEOUT",
                &mut config.redis.connect_timeout,
            ),
        ] {
            if let Some(text) = var(name) {
                *field = Some(
                    parse_duration(&text).map_err(|why| config_error(format!("{name}: {why}")))?,
                );
            }
        }
        for (name, field) in [
            ("LOCKKIT_POSTGRES_SESSIONS", &mut config.postgres.sessions),
            (
                "LOCKKIT_POSTGRES_MAX_WAITERS",
                &mut config.postgres.max_waiters,
            ),
            (
                "LOCKKIT_POSTGRES_MAX_TRANSACTIONS",
                &mut config.postgres.max_transactions,
            ),
        ] {
            if let Some(text) = var(name) {
                *field = Some(text.trim().parse().map_err(|_| {
                    config_error(format!(
                        "{name}: expected a whole number, got `{}`",
                        redact_url(&text)
                    ))
                })?);
            }
        }
        if let Some(schema) = var("LOCKKIT_POSTGRES_SCHEMA") {
            config.postgres.schema = Some(schema);
        }
        if let Some(text) = var("LOCKKIT_POSTGRES_CONNECT_TIMEOUT") {
            config.postgres.connect_timeout =
                Some(parse_duration(&text).map_err(|why| {
                    config_error(format!("LOCKKIT_POSTGRES_CONNECT_TIMEOUT: {why}"))
                })?);
        }
        if let Some(text) = var("LOCKKIT_POSTGRES_RESPONSE_TIMEOUT") {
            config.postgres.response_timeout = Some(parse_duration(&text).map_err(|why| {
                config_error(format!("LOCKKIT_POSTGRES_RESPONSE_TIMEOUT: {why}"))
            })?);
        }
        Ok(config)
    }

    /// Checks the fields that do not depend on the backend.
    pub(crate) fn validate(&self) -> Result<()> {
        check_namespace(&self.namespace, "lockkit")
    }
}

impl From<&str> for LockConfig {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

impl From<String> for LockConfig {
    fn from(url: String) -> Self {
        Self::new(url)
    }
}

impl From<&LockConfig> for LockConfig {
    fn from(config: &LockConfig) -> Self {
        config.clone()
    }
}

impl fmt::Debug for LockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockConfig")
            .field("url", &redact_url(&self.url))
            .field("namespace", &self.namespace)
            .field("require", &self.require)
            .field("default_ttl", &self.default_ttl)
            .field("redis", &self.redis)
            .field("postgres", &self.postgres)
            .finish()
    }
}

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, "lockkit", message)
}

/// An error at `path`. serde's message may quote the value it refused
/// (`invalid type: string "redis://:pw@h"`): quoted text is redacted, and
/// TOML's source excerpt is never included, so a password put in the wrong
/// field is not printed.
fn field_error(path: &serde_path_to_error::Path, message: &str) -> Error {
    let path = path.to_string();
    let message = hide_quoted(message);
    if path == "." {
        config_error(format!("config: {message}"))
    } else {
        config_error(format!("config field `{path}`: {message}"))
    }
}

/// `message` with every `"…"` passed through [`redact_url`].
fn hide_quoted(message: &str) -> String {
    let mut hidden = String::with_capacity(message.len());
    let mut parts = message.split('"');
    if let Some(first) = parts.next() {
        hidden.push_str(first);
    }
    for (index, part) in parts.enumerate() {
        hidden.push('"');
        if index % 2 == 0 {
            hidden.push_str(&redact_url(part));
        } else {
            hidden.push_str(part);
        }
    }
    hidden
}

/// Parses a duration written with its unit: `30s`, `250ms`, `1m 30s`.
fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let trimmed = text.trim();
    let shown = redact_url(text);
    if trimmed.starts_with('-') {
        return Err(format!(
            "`{shown}` is negative; durations must be zero or more"
        ));
    }
    humantime::parse_duration(trimmed).map_err(|error| {
        format!("`{shown}` is not a duration such as \"30s\" or \"250ms\" ({error})")
    })
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Duration, D::Error> {
    struct DurationText;

    impl Visitor<'_> for DurationText {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration with its unit, such as \"30s\" or \"250ms\"")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> std::result::Result<Duration, E> {
            parse_duration(text).map_err(E::custom)
        }
    }

    deserializer.deserialize_str(DurationText)
}

fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

fn safety_class<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<SafetyClass>, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map(Some).map_err(|_| {
        de::Error::custom(format!(
            "expected `efficiency` or `correctness`, got `{}`",
            redact_url(&text)
        ))
    })
}
