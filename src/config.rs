//! `LockConfig`: which backend, under which namespace, with which guarantees.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use lockkit_core::settings::duration;
use lockkit_core::{
    check_namespace, redact_url, Error, ErrorKind, Result, SafetyClass, DEFAULT_NAMESPACE,
    DEFAULT_TTL,
};
use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::env::{self, Env, Seen};

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
///
/// [etcd]                       # read by the etcd backend only
/// session_ttl = "10s"          # the session lease every lock is attached to
/// ```
#[derive(Clone, PartialEq, Deserialize)]
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
    // One field per backend, named as its section and its feature: the
    // backend crate's own section where it is compiled in, kept raw where
    // it is not, so one file serves builds with different features. A new
    // backend adds its pair here and its name to `SECTIONS`.
    /// The `[redis]` section ([`lockkit_redis::RedisConfig`]).
    #[cfg(feature = "redis")]
    #[serde(default)]
    pub redis: lockkit_redis::RedisConfig,
    /// The `[redis]` section, kept raw: this build has no `redis` feature.
    #[cfg(not(feature = "redis"))]
    #[serde(default)]
    pub redis: Option<RawSection>,
    /// The `[postgres]` section ([`lockkit_postgres::PostgresConfig`]).
    #[cfg(feature = "postgres")]
    #[serde(default)]
    pub postgres: lockkit_postgres::PostgresConfig,
    /// The `[postgres]` section, kept raw: this build has no `postgres` feature.
    #[cfg(not(feature = "postgres"))]
    #[serde(default)]
    pub postgres: Option<RawSection>,
    /// The `[redlock]` section ([`lockkit_redlock::RedlockConfig`]).
    #[cfg(feature = "redlock")]
    #[serde(default)]
    pub redlock: lockkit_redlock::RedlockConfig,
    /// The `[redlock]` section, kept raw: this build has no `redlock` feature.
    #[cfg(not(feature = "redlock"))]
    #[serde(default)]
    pub redlock: Option<RawSection>,
    /// The `[etcd]` section ([`lockkit_etcd::EtcdConfig`]).
    #[cfg(feature = "etcd")]
    #[serde(default)]
    pub etcd: lockkit_etcd::EtcdConfig,
    /// The `[etcd]` section, kept raw: this build has no `etcd` feature.
    #[cfg(not(feature = "etcd"))]
    #[serde(default)]
    pub etcd: Option<RawSection>,
    /// The `[zk]` section ([`lockkit_zk::ZkConfig`]).
    #[cfg(feature = "zk")]
    #[serde(default)]
    pub zk: lockkit_zk::ZkConfig,
    /// The `[zk]` section, kept raw: this build has no `zk` feature.
    #[cfg(not(feature = "zk"))]
    #[serde(default)]
    pub zk: Option<RawSection>,
}

/// The backends' sections, by name: the registry the environment is read by
/// (`LOCKKIT_<SECTION>_<FIELD>`).
pub(crate) const SECTIONS: &[&str] = &["redis", "redlock", "postgres", "etcd", "zk"];

/// A configuration section of a backend this build does not include, kept
/// as it was written so one configuration file serves builds with
/// different features. Its `Debug` shows its keys only.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct RawSection(toml::Table);

impl RawSection {
    /// The section as written.
    pub fn table(&self) -> &toml::Table {
        &self.0
    }
}

impl fmt::Debug for RawSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSection")
            .field("keys", &self.0.keys().collect::<Vec<_>>())
            .finish()
    }
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
            redis: Default::default(),
            postgres: Default::default(),
            redlock: Default::default(),
            etcd: Default::default(),
            zk: Default::default(),
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
    #[cfg(feature = "redis")]
    pub fn redis(mut self, redis: lockkit_redis::RedisConfig) -> Self {
        self.redis = redis;
        self
    }

    /// Sets the `[postgres]` section.
    #[cfg(feature = "postgres")]
    pub fn postgres(mut self, postgres: lockkit_postgres::PostgresConfig) -> Self {
        self.postgres = postgres;
        self
    }

    /// Sets the `[redlock]` section.
    #[cfg(feature = "redlock")]
    pub fn redlock(mut self, redlock: lockkit_redlock::RedlockConfig) -> Self {
        self.redlock = redlock;
        self
    }

    /// Sets the `[etcd]` section.
    #[cfg(feature = "etcd")]
    pub fn etcd(mut self, etcd: lockkit_etcd::EtcdConfig) -> Self {
        self.etcd = etcd;
        self
    }

    /// Sets the `[zk]` section.
    #[cfg(feature = "zk")]
    pub fn zk(mut self, zk: lockkit_zk::ZkConfig) -> Self {
        self.zk = zk;
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

    /// Reads the configuration from the process environment: `LOCKKIT_URL`
    /// (required), `LOCKKIT_NAMESPACE`, `LOCKKIT_REQUIRE`,
    /// `LOCKKIT_DEFAULT_TTL`, and each section's fields as
    /// `LOCKKIT_<SECTION>_<FIELD>` (`LOCKKIT_REDIS_MIN_REPLICAS`,
    /// `LOCKKIT_POSTGRES_MAX_WAITERS`, …). The values go through the same
    /// deserializer as TOML's, so they are checked alike; a refusal names
    /// the variable. Variables of a section this build does not include are
    /// not read.
    ///
    /// Values are trimmed of surrounding whitespace. A variable of a section
    /// this build reads whose name is none of the section's fields
    /// (`LOCKKIT_REDIS_MIN_REPLICA`) is refused, as an unknown field in TOML
    /// is; so is a `LOCKKIT_*` variable whose value is not UTF-8.
    pub fn from_env() -> Result<Self> {
        let mut vars = HashMap::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|name| name.starts_with("LOCKKIT_")) else {
                continue;
            };
            let value = value
                .into_string()
                .map_err(|_| config_error(format!("{name}: the value is not valid UTF-8")))?;
            vars.insert(name.to_owned(), value);
        }
        Self::from_var_map(&vars)
    }

    /// As [`from_env`](Self::from_env), from the variables in `vars`.
    fn from_var_map(vars: &HashMap<String, String>) -> Result<Self> {
        let seen = Seen::default();
        let config = Self::read_vars(&|name| vars.get(name).cloned(), &seen)?;
        match seen.unknown(vars.keys().map(String::as_str)) {
            Some(refusal) => Err(config_error(refusal)),
            None => Ok(config),
        }
    }

    /// As [`from_env`](Self::from_env), reading variables through `var` —
    /// which cannot list them, so a misspelt name goes unnoticed here.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        Self::read_vars(&var, &Seen::default())
    }

    fn read_vars(var: &dyn Fn(&str) -> Option<String>, seen: &Seen) -> Result<Self> {
        if var("LOCKKIT_URL").is_none() {
            return Err(config_error(
                "LOCKKIT_URL is not set; it names the lock backend, e.g. memory://",
            ));
        }
        serde_path_to_error::deserialize(Env::new(var, SECTIONS, seen)).map_err(|error| {
            let name = env::variable(&error.path().to_string());
            config_error(format!(
                "{name}: {}",
                hide_quoted(&error.inner().to_string())
            ))
        })
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
            .field("redlock", &self.redlock)
            .field("etcd", &self.etcd)
            .field("zk", &self.zk)
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

/// `message` with every `"…"` passed through [`redact_url`]. serde quotes
/// a refused value in Rust's escaped form, so a `\"` inside it does not
/// end the quote.
fn hide_quoted(message: &str) -> String {
    let mut hidden = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find('"') {
        hidden.push_str(&rest[..=open]);
        let quoted = &rest[open + 1..];
        let mut escaped = false;
        let end = quoted
            .char_indices()
            .find(|&(_, c)| {
                let closes = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                closes
            })
            .map_or(quoted.len(), |(at, _)| at);
        hidden.push_str(&redact_url(&quoted[..end]));
        rest = &quoted[end..];
        if let Some(after) = rest.strip_prefix('"') {
            hidden.push('"');
            rest = after;
        }
    }
    hidden.push_str(rest);
    hidden
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn a_misspelt_variable_of_a_section_read_is_refused() -> Result<()> {
        let misspelt = vars(&[
            ("LOCKKIT_URL", "memory://"),
            ("LOCKKIT_REDIS_MIN_REPLICA", "5"),
        ]);
        let outcome = LockConfig::from_var_map(&misspelt);
        if cfg!(feature = "redis") {
            let message = outcome
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default();
            assert!(
                message.contains("LOCKKIT_REDIS_MIN_REPLICA is not"),
                "{message}"
            );
            assert!(message.contains("LOCKKIT_REDIS_MIN_REPLICAS"), "{message}");
        } else {
            // A section this build keeps raw has no fields to check against.
            outcome?;
        }
        // Not a section's: another program's variable, or the test bed's.
        let foreign = vars(&[
            ("LOCKKIT_URL", "memory://"),
            ("LOCKKIT_TEST_REDIS_URL", "redis://h"),
            ("LOCKKIT_SERVICES_DIR", "target/services"),
        ]);
        LockConfig::from_var_map(&foreign)?;
        Ok(())
    }

    #[test]
    fn variables_are_trimmed() -> Result<()> {
        let spaced = vars(&[
            ("LOCKKIT_URL", "  memory://  "),
            ("LOCKKIT_REQUIRE", " correctness"),
        ]);
        let config = LockConfig::from_var_map(&spaced)?;
        assert_eq!(config.url, "memory://");
        assert_eq!(config.require, Some(SafetyClass::Correctness));
        Ok(())
    }
}
