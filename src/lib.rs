//! lockkit: one async lock API over Redis, Redlock, PostgreSQL, etcd,
//! ZooKeeper and memory — picked by configuration, with fencing tokens.
//!
//! ```
//! use std::time::Duration;
//! use lockkit::Acquire;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> lockkit::Result<()> {
//! let locks = lockkit::connect("memory://").await?;
//! let lease = locks
//!     .acquire("billing:user-42", Acquire::ttl(Duration::from_secs(30)).wait(Duration::from_secs(5)))
//!     .await?;
//! // Hand the token to the protected resource; it refuses lower ones.
//! println!("token {}", lease.fencing_token());
//! lease.release().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Which backend to choose:
//! 1. The protected work is idempotent or de-duplicated → an efficiency
//!    lock (Redis) is enough; Redlock (a majority of independent Redis
//!    servers) if it must survive one server's loss without a consensus
//!    system.
//! 2. The work lives in PostgreSQL → a transaction-scoped advisory lock:
//!    the lock and the work commit together.
//! 3. Otherwise → make the work idempotent if at all possible; else a
//!    correctness backend (etcd, ZooKeeper, PostgreSQL) **with the fencing
//!    token checked at the resource**.
//! 4. Leader election and long workflows across services → etcd or ZooKeeper.
//!
//! Network backends are compiled in by features named after them (`redis`,
//! `redlock`, `postgres`, `etcd`, `zk`, or `full`); the memory backend is
//! always present. Feature `cli` (in `full`) builds the `lockkit` command:
//! `lockkit run NAME -- PROGRAM` runs a program under a lock with its
//! fencing token in `LOCKKIT_FENCING_TOKEN`, `lockkit status NAME` reads
//! who holds a lock ([`Locker::status`]), `lockkit check` tries a backend.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]
#![forbid(unsafe_code)]

mod config;
mod env;
mod scheme;

use std::sync::Arc;

pub use config::{LockConfig, RawSection};
pub use lockkit_core::redact_url;
pub use lockkit_core::settings;
pub use lockkit_core::*;
/// The etcd backend, for its options and its key layout.
#[cfg(feature = "etcd")]
pub use lockkit_etcd as etcd;
#[cfg(feature = "etcd")]
pub use lockkit_etcd::EtcdConfig;
/// The PostgreSQL backend, for what only it can do: locked transactions
/// ([`PostgresBackend::transaction`](lockkit_postgres::PostgresBackend::transaction)),
/// explicit keys, options.
#[cfg(feature = "postgres")]
pub use lockkit_postgres as postgres;
#[cfg(feature = "postgres")]
pub use lockkit_postgres::PostgresConfig;
/// The Redis backend, for its own options and scripts.
#[cfg(feature = "redis")]
pub use lockkit_redis as redis;
#[cfg(feature = "redis")]
pub use lockkit_redis::RedisConfig;
/// The Redlock backend, for its options.
#[cfg(feature = "redlock")]
pub use lockkit_redlock as redlock;
#[cfg(feature = "redlock")]
pub use lockkit_redlock::RedlockConfig;
/// The ZooKeeper backend, for its options and its node layout.
#[cfg(feature = "zk")]
pub use lockkit_zk as zk;
#[cfg(feature = "zk")]
pub use lockkit_zk::ZkConfig;
pub use scheme::Scheme;

/// Connects to the lock service a URL or a [`LockConfig`] names.
///
/// Refuses, with a [`Config`](ErrorKind::Config) error saying why: an
/// unknown scheme (listing the known ones), a backend not compiled into this
/// build (naming the feature), a backend weaker than `require`, and a
/// namespace or default TTL the backend cannot use.
///
/// The memory backend (`memory://`) is private to the returned [`Locker`]:
/// clone the locker to share its locks.
pub async fn connect(config: impl Into<LockConfig>) -> Result<Locker> {
    let config = config.into();
    config.validate()?;
    let scheme = Scheme::of(&config.url)?;
    if !scheme.is_compiled_in() {
        return Err(scheme.not_compiled_in());
    }
    let backend: Arc<dyn LockBackend> = match scheme {
        Scheme::Memory => {
            let rest = &config.url["memory://".len()..];
            if !rest.is_empty() {
                return Err(Error::new(
                    ErrorKind::Config,
                    "lockkit",
                    format!(
                        "url: memory:// takes no host, path or options, got `{}`",
                        redact_url(&config.url)
                    ),
                ));
            }
            Arc::new(MemoryBackend::new())
        }
        #[cfg(feature = "redis")]
        Scheme::Redis => Arc::new(
            lockkit_redis::RedisBackend::from_config(&config.url, &config.namespace, &config.redis)
                .await?,
        ),
        #[cfg(feature = "redlock")]
        Scheme::Redlock => Arc::new(
            lockkit_redlock::RedlockBackend::from_config(
                &config.url,
                &config.namespace,
                &config.redlock,
            )
            .await?,
        ),
        #[cfg(feature = "postgres")]
        Scheme::Postgres => Arc::new(
            lockkit_postgres::PostgresBackend::from_config(
                &config.url,
                &config.namespace,
                &config.postgres,
            )
            .await?,
        ),
        #[cfg(feature = "etcd")]
        Scheme::Etcd => Arc::new(
            lockkit_etcd::EtcdBackend::from_config(&config.url, &config.namespace, &config.etcd)
                .await?,
        ),
        #[cfg(feature = "zk")]
        Scheme::Zk => Arc::new(
            lockkit_zk::ZkBackend::from_config(&config.url, &config.namespace, &config.zk).await?,
        ),
        // Reached only in builds without every backend (`is_compiled_in` above).
        #[allow(unreachable_patterns)]
        other => return Err(other.not_compiled_in()),
    };
    check_backend(&config, backend.as_ref())?;
    tracing::debug!(config = ?config, backend = backend.name(), "lockkit connected");
    Ok(Locker::from_backend(backend).with_default_ttl(config.default_ttl))
}

/// Refuses a backend weaker than `require`, or one that cannot honour the default TTL.
fn check_backend(config: &LockConfig, backend: &dyn LockBackend) -> Result<()> {
    let capabilities = backend.capabilities();
    if let Some(required) = config.require {
        if capabilities.safety < required {
            return Err(Error::new(
                ErrorKind::Config,
                "lockkit",
                format!(
                    "require: the configuration requires {required} locks, but backend {} \
                     offers {} locks (it may admit two holders after a failover or a long pause); \
                     choose a correctness backend (postgres, etcd, zk) or relax `require`",
                    backend.name(),
                    capabilities.safety
                ),
            ));
        }
    }
    capabilities
        .check_ttl("default_ttl", config.default_ttl, backend.name())
        .map_err(|refusal| Error::new(ErrorKind::Config, "lockkit", refusal.message()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockkit_core::conformance::ProbedBackend;
    use std::time::Duration;

    fn efficiency_only() -> ProbedBackend {
        let inner = MemoryBackend::new();
        let mut capabilities = inner.capabilities().clone();
        capabilities.safety = SafetyClass::Efficiency;
        ProbedBackend::new(Arc::new(inner)).with_capabilities(capabilities)
    }

    #[test]
    fn require_correctness_refuses_an_efficiency_backend_saying_why() {
        let backend = efficiency_only();
        let config = LockConfig::new("memory://").require(SafetyClass::Correctness);
        let error = check_backend(&config, &backend).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.message().contains("requires correctness"), "{error}");
        assert!(error.message().contains("offers efficiency"), "{error}");
        let relaxed = LockConfig::new("memory://").require(SafetyClass::Efficiency);
        assert!(check_backend(&relaxed, &backend).is_ok());
        assert!(check_backend(&LockConfig::new("memory://"), &backend).is_ok());
    }

    #[test]
    fn a_default_ttl_outside_the_backends_range_is_refused() {
        let backend = efficiency_only();
        let config = LockConfig::new("memory://").default_ttl(Duration::from_secs(400 * 24 * 3600));
        let error = check_backend(&config, &backend).unwrap_err();
        assert!(error.message().starts_with("default_ttl"), "{error}");
    }
}
