//! `connect`: scheme selection, refusals that say why, and the conformance
//! suite on the memory backend as a configuration builds it.

use std::time::Duration;

use lockkit::conformance::Target;
use lockkit::{connect, Acquire, ErrorKind, LockConfig, SafetyClass, Scheme};

mod memory_through_connect {
    use super::*;

    /// Each client is a locker of its own over the one backend `connect`
    /// built, so closing one client leaves the others open.
    async fn target() -> Option<impl Target> {
        let locks = connect("memory://").await.expect("memory:// connects");
        Some(move || {
            let backend = std::sync::Arc::clone(locks.backend());
            async move { lockkit::Locker::from_backend(backend) }
        })
    }

    lockkit::conformance_suite!(target());
}

async fn refusal(config: impl Into<LockConfig>) -> String {
    let error = connect(config).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    error.to_string()
}

#[tokio::test]
async fn every_known_scheme_is_recognised() {
    let urls = [
        ("memory://", Scheme::Memory),
        ("redis://127.0.0.1:6379", Scheme::Redis),
        ("rediss://127.0.0.1:6380", Scheme::Redis),
        ("REDIS://127.0.0.1", Scheme::Redis),
        ("redlock://h1:7001,h2:7002,h3:7003", Scheme::Redlock),
        ("postgres://localhost/locks", Scheme::Postgres),
        ("postgresql://localhost/locks", Scheme::Postgres),
        ("etcd://h1:2379,h2:2379", Scheme::Etcd),
        ("zk://h1:2181,h2:2181/locks", Scheme::Zk),
    ];
    for (url, scheme) in urls {
        assert_eq!(Scheme::of(url).unwrap(), scheme, "{url}");
    }
}

#[tokio::test]
async fn a_backend_not_compiled_in_names_its_feature() {
    for scheme in Scheme::ALL
        .into_iter()
        .filter(|scheme| !scheme.is_compiled_in())
    {
        let url = format!("{}://127.0.0.1", scheme.url_schemes()[0]);
        let message = refusal(url.as_str()).await;
        let feature = scheme.feature().unwrap();
        assert!(
            message.contains(&format!("feature `{feature}`")),
            "{message}"
        );
        assert!(
            message.contains(&format!("backend {}", scheme.backend_name())),
            "{message}"
        );
    }
}

#[tokio::test]
async fn an_unknown_scheme_lists_the_known_ones() {
    let message = refusal("consul://127.0.0.1:8500").await;
    assert!(message.contains("unknown scheme `consul://`"), "{message}");
    for scheme in [
        "memory://",
        "redis://",
        "redlock://",
        "postgres://",
        "etcd://",
        "zk://",
    ] {
        assert!(message.contains(scheme), "{message} does not list {scheme}");
    }
    let message = refusal("127.0.0.1:6379").await;
    assert!(message.contains("has no scheme"), "{message}");
    // Whatever refuses it — a missing feature or an unknown host — never
    // repeats the password.
    let error = connect("redis://:hunter2@nowhere.invalid")
        .await
        .unwrap_err();
    assert!(
        !format!("{error} {error:?}").contains("hunter2"),
        "{error:?}"
    );
}

#[tokio::test]
async fn memory_takes_no_host() {
    let message = refusal("memory://somewhere").await;
    assert!(message.contains("memory:// takes no host"), "{message}");
}

#[tokio::test]
async fn a_bad_namespace_or_default_ttl_is_refused_by_name() {
    let message = refusal(LockConfig::new("memory://").namespace("")).await;
    assert!(message.contains("namespace is empty"), "{message}");
    let message = refusal(LockConfig::new("memory://").namespace("a\nb")).await;
    assert!(message.contains("namespace"), "{message}");
    let message = refusal(LockConfig::new("memory://").namespace("n".repeat(300))).await;
    assert!(message.contains("namespace is 300 bytes"), "{message}");
    let message = refusal(LockConfig::new("memory://").default_ttl(Duration::ZERO)).await;
    assert!(message.contains("default_ttl"), "{message}");
}

#[tokio::test]
async fn the_configured_default_ttl_applies_to_acquires_without_one() {
    let config = LockConfig::new("memory://")
        .default_ttl(Duration::from_millis(150))
        .require(SafetyClass::Correctness);
    let locks = connect(config).await.unwrap();
    assert_eq!(locks.default_ttl(), Duration::from_millis(150));
    let lease = locks
        .acquire("defaulted", Acquire::default())
        .await
        .unwrap();
    let remaining = lease.remaining().unwrap();
    assert!(remaining <= Duration::from_millis(150) && remaining > Duration::from_millis(100));
    lease.release().await.unwrap();
}

/// The call sites of DESIGN.md §3, unchanged, against the memory backend.
#[tokio::test]
async fn the_documented_call_sites_compile_and_work() {
    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }
    async fn write_with_fence(token: lockkit::FencingToken) -> lockkit::Result<()> {
        assert!(token.get() >= 1);
        Ok(())
    }
    let locks = lockkit::connect("memory://").await.unwrap();
    let lease = locks
        .acquire("billing:user-42", Acquire::ttl(secs(30)).wait(secs(5)))
        .await
        .unwrap();
    write_with_fence(lease.fencing_token()).await.unwrap();
    lease.release().await.unwrap();
    let maybe = locks
        .try_acquire("report:daily", Acquire::ttl(secs(60)))
        .await
        .unwrap();
    assert!(maybe.is_some());
    let done = locks
        .with_lock(
            "job:7",
            Acquire::ttl(secs(10)).auto_renew(),
            |lease| async move { write_with_fence(lease.fencing_token()).await },
        )
        .await
        .unwrap();
    assert!(done.is_ok());
    maybe.unwrap().release().await.unwrap();
}

/// The `[redis]` section reaches the backend: `min_replicas = 1` against the
/// standalone test Redis (no replicas) refuses every grant.
#[cfg(feature = "redis")]
#[tokio::test]
async fn the_redis_section_reaches_the_backend() {
    let Some(url) = lockkit_testkit::server_from_env("LOCKKIT_TEST_REDIS_URL") else {
        return;
    };
    let namespace = lockkit_testkit::unique_namespace();
    let config = LockConfig::from_toml(&format!(
        "url = \"{url}\"\nnamespace = \"{namespace}\"\n[redis]\nmin_replicas = 1\nreplica_timeout = \"20ms\"\n"
    ))
    .unwrap();
    let locks = connect(config).await.unwrap();
    assert_eq!(locks.backend().name(), "redis");
    let error = locks
        .acquire("replicated", Acquire::ttl(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.message().contains("replicas"), "{error}");
}

/// The `[postgres]` section reaches the backend: a bad value is refused
/// naming it, before any connection; a good one connects a correctness backend.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_postgres_section_reaches_the_backend() {
    let message = refusal(
        LockConfig::from_toml(
            "url = \"postgres://nobody@127.0.0.1:1/x\"\n[postgres]\nsessions = 9\n",
        )
        .unwrap(),
    )
    .await;
    assert!(message.contains("sessions must be 1 to 4"), "{message}");
    let error = connect("postgres://app:hunter2@127.0.0.1:1/x")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(
        !format!("{error} {error:?}").contains("hunter2"),
        "{error:?}"
    );

    let Some(url) = lockkit_testkit::server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let namespace = lockkit_testkit::unique_namespace();
    let config = LockConfig::from_toml(&format!(
        "url = \"{url}\"\nnamespace = \"{namespace}\"\nrequire = \"correctness\"\n[postgres]\nsessions = 1\nmax_waiters = 1\n"
    ))
    .unwrap();
    let locks = connect(config).await.unwrap();
    assert_eq!(locks.backend().name(), "postgres");
    assert_eq!(locks.capabilities().lease, lockkit::LeaseModel::Session);
    let lease = locks
        .acquire("configured", Acquire::ttl(Duration::from_secs(5)))
        .await
        .unwrap();
    lease.release().await.unwrap();
}

/// The `[etcd]` section reaches the backend: a bad value is refused naming
/// it, before any connection; a good one connects a correctness backend
/// whose session lease has the configured TTL.
#[cfg(feature = "etcd")]
#[tokio::test]
async fn the_etcd_section_reaches_the_backend() {
    let message = refusal(
        LockConfig::from_toml("url = \"etcd://127.0.0.1:1\"\n[etcd]\nsession_ttl = \"1s\"\n")
            .unwrap(),
    )
    .await;
    assert!(
        message.contains("session_ttl must be at least"),
        "{message}"
    );
    let error = connect(
        LockConfig::from_toml(
            "url = \"etcd://app:hunter2@127.0.0.1:1\"\n[etcd]\nconnect_timeout = \"300ms\"\nresponse_timeout = \"300ms\"\n",
        )
        .unwrap(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(
        !format!("{error} {error:?}").contains("hunter2"),
        "{error:?}"
    );

    let Some(endpoints) = lockkit_testkit::server_from_env("LOCKKIT_TEST_ETCD_ENDPOINTS") else {
        return;
    };
    let url = format!("etcd://{}", endpoints.replace("http://", ""));
    let namespace = lockkit_testkit::unique_namespace();
    let config = LockConfig::from_toml(&format!(
        "url = \"{url}\"\nnamespace = \"{namespace}\"\nrequire = \"correctness\"\n[etcd]\nsession_ttl = \"4s\"\n"
    ))
    .unwrap();
    let locks = connect(config).await.unwrap();
    assert_eq!(locks.backend().name(), "etcd");
    assert_eq!(locks.capabilities().lease, lockkit::LeaseModel::Session);
    let lease = locks
        .acquire("configured", Acquire::ttl(Duration::from_secs(30)))
        .await
        .unwrap();
    let bound = lease
        .remaining()
        .expect("an etcd lease has its session's bound");
    assert!(
        bound <= Duration::from_secs(4),
        "the session lease is not the configured 4 s: {bound:?} left"
    );
    lease.release().await.unwrap();
    locks.close().await.unwrap();
}
