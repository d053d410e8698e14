//! Lease behaviour that lives in lockkit-core above every backend: renewal
//! failure, metrics, and drop outside a runtime. The backend is the real
//! memory backend; where a failure is needed, `ProbedBackend` injects it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lockkit_core::conformance::ProbedBackend;
use lockkit_core::{telemetry, Acquire, ErrorKind, LeaseState, Locker, MemoryBackend};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// The memory backend, wrapped to count extends and inject their failure.
fn flaky_memory() -> Arc<ProbedBackend> {
    Arc::new(ProbedBackend::new(Arc::new(MemoryBackend::new())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_renewal_makes_the_lease_uncertain_then_lost_at_its_bound() {
    let backend = flaky_memory();
    let locks = Locker::from_backend(backend.clone());
    let ttl = Duration::from_millis(300);
    let lease = locks
        .acquire(
            "flaky",
            Acquire::ttl(ttl).renew_every(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    backend.fail_extends(true);
    let bound = lease.valid_until().unwrap();
    assert_eq!(lease.not_held().await, LeaseState::Uncertain);
    assert!(
        Instant::now() < bound,
        "Uncertain must come while the lease is still valid"
    );
    assert!(lease.state().is_valid());
    assert_eq!(lease.lost().await, LeaseState::Lost);
    assert!(
        Instant::now() >= bound,
        "Lost must not come before the bound"
    );
    // Recovery of the backend does not resurrect a lease that reported Lost.
    backend.fail_extends(false);
    assert_eq!(lease.state(), LeaseState::Lost);
    let error = lease.extend(ttl).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotHeld);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_recovers_from_uncertain_when_the_backend_answers_again() {
    let backend = flaky_memory();
    backend.fail_extends(true);
    let locks = Locker::from_backend(backend.clone());
    let lease = locks
        .acquire(
            "recovering",
            Acquire::ttl(Duration::from_millis(600)).renew_every(Duration::from_millis(60)),
        )
        .await
        .unwrap();
    assert_eq!(lease.not_held().await, LeaseState::Uncertain);
    backend.fail_extends(false);
    // Renewals run one after another: once a second call after the recovery
    // has started, the first has succeeded and updated the lease.
    let calls = backend.extends();
    tokio::time::timeout(Duration::from_secs(2), backend.extends_reach(calls + 2))
        .await
        .expect("renewal stopped retrying");
    assert_eq!(lease.state(), LeaseState::Held, "renewal never recovered");
    lease.release().await.unwrap();
}

#[test]
fn metrics_are_recorded_under_their_documented_names() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let backend = flaky_memory();
            let locks = Locker::from_backend(backend.clone());
            let ttl = Duration::from_millis(200);
            let lease = locks
                .acquire(
                    "metrics",
                    Acquire::ttl(ttl).renew_every(Duration::from_millis(20)),
                )
                .await
                .unwrap();
            assert!(locks
                .try_acquire("metrics", Acquire::ttl(ttl))
                .await
                .unwrap()
                .is_none());
            // Two renewals have completed once a third has started.
            backend.extends_reach(3).await;
            lease.release().await.unwrap();
            let expiring = locks
                .acquire("metrics", Acquire::ttl(Duration::from_millis(20)))
                .await
                .unwrap();
            expiring.lost().await;
            assert!(expiring.release().await.is_err());
        });
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let counter = |name: &str, label: Option<(&str, &str)>| -> u64 {
        snapshot
            .iter()
            .filter(|(key, ..)| key.key().name() == name)
            .filter(|(key, ..)| {
                label
                    .is_none_or(|(k, v)| key.key().labels().any(|l| l.key() == k && l.value() == v))
            })
            .map(|(.., value)| match value {
                DebugValue::Counter(count) => *count,
                DebugValue::Histogram(samples) => samples.len() as u64,
                DebugValue::Gauge(_) => 0,
            })
            .sum()
    };
    assert_eq!(
        counter(telemetry::ACQUIRE_TOTAL, Some(("outcome", "acquired"))),
        2
    );
    assert_eq!(
        counter(telemetry::ACQUIRE_TOTAL, Some(("outcome", "contended"))),
        1
    );
    assert_eq!(counter(telemetry::CONTENTION_TOTAL, None), 1);
    assert_eq!(counter(telemetry::ACQUIRE_WAIT_SECONDS, None), 3);
    assert!(counter(telemetry::RENEWALS_TOTAL, None) >= 2);
    assert_eq!(counter(telemetry::RENEWAL_FAILURES_TOTAL, None), 0);
    assert_eq!(counter(telemetry::HOLD_SECONDS, None), 2);
    assert_eq!(counter(telemetry::LOSSES_TOTAL, None), 1);
    assert!(snapshot.iter().all(|(key, ..)| key
        .key()
        .labels()
        .any(|l| l.key() == "backend" && l.value() == "memory")));
}

#[test]
fn a_lease_dropped_outside_a_runtime_lapses_at_its_ttl_without_panicking() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let locks = Locker::memory();
    let ttl = Duration::from_millis(100);
    let lease = runtime
        .block_on(locks.acquire("outside", Acquire::ttl(ttl)))
        .unwrap();
    let bound = lease.valid_until().unwrap();
    drop(lease);
    runtime.block_on(async {
        assert!(locks
            .try_acquire("outside", Acquire::ttl(ttl))
            .await
            .unwrap()
            .is_none());
        tokio::time::sleep_until(bound.into()).await;
        let next = locks
            .try_acquire("outside", Acquire::ttl(ttl))
            .await
            .unwrap();
        assert!(next.is_some(), "the lock did not lapse at its TTL");
        next.unwrap().release().await.unwrap();
    });
}
