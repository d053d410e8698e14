//! The URL schemes lockkit knows, and which of them this build can connect to.

use std::fmt;

use lockkit_core::{Error, ErrorKind, Result};

/// A lock service lockkit knows how to reach, named by its URL scheme.
///
/// Every scheme is recognised in every build; connecting to one whose
/// backend feature is not compiled in is a [`Config`](ErrorKind::Config)
/// error that names the feature to enable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `memory://` — in-process locks, always compiled in.
    Memory,
    /// `redis://`, `rediss://` (TLS), `redis+unix://`, `unix://` (a Unix
    /// socket), and Valkey's `valkey://`, `valkeys://`, `valkey+unix://` —
    /// one Redis or Valkey server (feature `redis`).
    Redis,
    /// `redlock://h1:p1,h2:p2,h3:p3` — a majority of independent Redis servers (feature `redlock`).
    Redlock,
    /// `postgres://`, `postgresql://`, or libpq's keyword form
    /// (`host=db user=app dbname=app`, no scheme) — PostgreSQL advisory
    /// locks (feature `postgres`).
    Postgres,
    /// `etcd://h1,h2,h3` — etcd leases (feature `etcd`).
    Etcd,
    /// `zk://h1,h2,h3/chroot` — ZooKeeper sequential nodes (feature `zk`).
    Zk,
}

impl Scheme {
    /// Every scheme, in the order they are listed to users.
    pub const ALL: [Scheme; 6] = [
        Self::Memory,
        Self::Redis,
        Self::Redlock,
        Self::Postgres,
        Self::Etcd,
        Self::Zk,
    ];

    /// The URL prefixes that select this scheme.
    pub fn url_schemes(self) -> &'static [&'static str] {
        match self {
            Self::Memory => &["memory"],
            Self::Redis => &[
                "redis",
                "rediss",
                "redis+unix",
                "unix",
                "valkey",
                "valkeys",
                "valkey+unix",
            ],
            Self::Redlock => &["redlock"],
            Self::Postgres => &["postgres", "postgresql"],
            Self::Etcd => &["etcd"],
            Self::Zk => &["zk"],
        }
    }

    /// The backend's name, as in errors and metrics.
    pub fn backend_name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
            Self::Redlock => "redlock",
            Self::Postgres => "postgres",
            Self::Etcd => "etcd",
            Self::Zk => "zk",
        }
    }

    /// The facade feature that compiles this backend in (`None`: always present).
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Self::Memory => None,
            other => Some(other.backend_name()),
        }
    }

    /// Whether this build can connect to this scheme.
    pub fn is_compiled_in(self) -> bool {
        feature_enabled(self)
    }

    /// The scheme of `url`, or a [`Config`](ErrorKind::Config) error listing the known ones.
    /// A URL without a scheme that starts `keyword=` is libpq's keyword form: PostgreSQL.
    pub fn of(url: &str) -> Result<Self> {
        // First: a keyword value may hold `://` (`application_name=svc://x`).
        if lockkit_core::conninfo::is_keyword_form(url) {
            return Ok(Self::Postgres);
        }
        // The Redis driver also takes a socket path right after the colon.
        let lowered = url.to_ascii_lowercase();
        if ["unix:/", "redis+unix:/", "valkey+unix:/"]
            .iter()
            .any(|prefix| lowered.starts_with(prefix))
        {
            return Ok(Self::Redis);
        }
        let Some((prefix, _)) = url.split_once("://") else {
            return Err(Error::new(
                ErrorKind::Config,
                "lockkit",
                format!(
                    "url: `{}` has no scheme; expected one of {}, or libpq's keyword form \
                     (`host=… dbname=…`) for PostgreSQL",
                    lockkit_core::redact_url(url),
                    Self::listing(Self::ALL.iter().copied())
                ),
            ));
        };
        let prefix = prefix.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|scheme| scheme.url_schemes().contains(&prefix.as_str()))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    "lockkit",
                    format!(
                        "url: unknown scheme `{prefix}://`; this build of lockkit connects to {} \
                         (and knows {})",
                        Self::listing(Self::ALL.into_iter().filter(|s| s.is_compiled_in())),
                        Self::listing(Self::ALL.into_iter().filter(|s| !s.is_compiled_in())),
                    ),
                )
            })
    }

    /// An error for a scheme this build cannot connect to, naming the feature.
    pub(crate) fn not_compiled_in(self) -> Error {
        let name = self.backend_name();
        let feature = self.feature().unwrap_or(name);
        Error::new(
            ErrorKind::Config,
            "lockkit",
            format!("backend {name} is not compiled in: enable feature `{feature}` of lockkit"),
        )
    }

    fn listing(schemes: impl Iterator<Item = Scheme>) -> String {
        let prefixes: Vec<String> = schemes
            .flat_map(|scheme| scheme.url_schemes().iter().map(|p| format!("{p}://")))
            .collect();
        if prefixes.is_empty() {
            "nothing else".to_owned()
        } else {
            prefixes.join(", ")
        }
    }
}

fn feature_enabled(scheme: Scheme) -> bool {
    match scheme {
        Scheme::Memory => true,
        Scheme::Redis => cfg!(feature = "redis"),
        Scheme::Redlock => cfg!(feature = "redlock"),
        Scheme::Postgres => cfg!(feature = "postgres"),
        Scheme::Etcd => cfg!(feature = "etcd"),
        Scheme::Zk => cfg!(feature = "zk"),
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.backend_name())
    }
}
