//! Renewal: keeps a lease alive, stops with release and drop, respects max_hold.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{expect_error, unique_name, ProbedBackend, Target, Timing};
use crate::{Acquire, ErrorKind, LeaseModel, LeaseState, Locker};

/// Auto-renewal keeps a lease held across several TTLs.
pub async fn auto_renewal_keeps_the_lease_alive(target: &impl Target) {
    let (locks, probe) = (target.client().await, target.client().await);
    let timing = Timing::of(&locks);
    let name = unique_name("renewal");
    let outcome = locks
        .acquire(&name, Acquire::ttl(timing.ttl).auto_renew())
        .await;
    if !locks.capabilities().extend && locks.capabilities().lease == LeaseModel::Ttl {
        expect_error(outcome, ErrorKind::Unsupported, "auto_renew without extend");
        return;
    }
    let lease = outcome.unwrap();
    let kept = tokio::time::timeout(timing.ttl * 4, lease.not_held()).await;
    assert!(
        kept.is_err(),
        "the renewed lease stopped being held: {:?}",
        kept
    );
    assert_eq!(lease.state(), LeaseState::Held);
    let blocked = probe
        .try_acquire(&name, Acquire::ttl(timing.ttl))
        .await
        .unwrap();
    assert!(blocked.is_none(), "a renewed lock was free after four TTLs");
    lease.release().await.unwrap();
}

/// No renewal reaches the backend after `release` returns, nor after a
/// dropped lease's background release.
pub async fn renewal_stops_after_release_and_drop(target: &impl Target) {
    let client = target.client().await;
    if !client.capabilities().extend || client.capabilities().lease == LeaseModel::Session {
        return extend_is_refused_or_unneeded(&client).await;
    }
    let counter = Arc::new(ProbedBackend::new(Arc::clone(client.backend())));
    let locks = Locker::from_backend(counter.clone());
    let timing = Timing::of(&locks);
    let every = timing.ttl / 5;
    for drop_it in [false, true] {
        let name = unique_name("renewal-stops");
        let lease = locks
            .acquire(&name, Acquire::ttl(timing.ttl).renew_every(every))
            .await
            .unwrap();
        let start = counter.extends();
        tokio::time::timeout(timing.ttl * 4, counter.extends_reach(start + 2))
            .await
            .expect("auto-renewal never extended the lease");
        if drop_it {
            drop(lease);
            // The background release is done once another owner can take the lock.
            let next = locks
                .acquire(
                    &name,
                    Acquire::ttl(timing.long_ttl).wait(Duration::from_secs(5)),
                )
                .await
                .unwrap();
            next.release().await.unwrap();
        } else {
            tokio::time::timeout(timing.ttl * 4, lease.release())
                .await
                .expect("release waited on a renewal that never stopped")
                .unwrap();
        }
        let after = counter.extends();
        // Absence has no event to await: watch five renewal periods pass.
        tokio::time::sleep(every * 5).await;
        assert_eq!(
            counter.extends(),
            after,
            "renewal ran on after release (drop: {drop_it})"
        );
    }
}

/// Renewal never keeps a lease past `max_hold`: it is lost within one TTL of the bound.
pub async fn renewal_respects_max_hold(target: &impl Target) {
    let locks = target.client().await;
    if !locks.capabilities().extend || locks.capabilities().lease == LeaseModel::Session {
        return extend_is_refused_or_unneeded(&locks).await;
    }
    let timing = Timing::of(&locks);
    let max_hold = timing.ttl * 2;
    let started = Instant::now();
    let lease = locks
        .acquire(
            &unique_name("max-hold"),
            Acquire::ttl(timing.ttl).max_hold(max_hold),
        )
        .await
        .unwrap();
    let state = tokio::time::timeout(timing.ttl * 10, lease.lost())
        .await
        .expect("renewal ignored max_hold");
    assert_eq!(state, LeaseState::Lost);
    let held_for = started.elapsed();
    assert!(
        held_for >= max_hold - timing.ttl,
        "lost after {held_for:?}: renewal stopped early"
    );
    assert!(
        lease.valid_until().unwrap() <= started + max_hold + Duration::from_millis(50),
        "renewal extended past max_hold"
    );
    assert!(lease.release().await.is_err());
}

/// What a backend cannot do is `Unsupported` — never faked — and what it
/// claims it can do works.
pub async fn unsupported_operations_say_so(target: &impl Target) {
    let locks = target.client().await;
    let timing = Timing::of(&locks);
    let lease = locks
        .acquire(&unique_name("capabilities"), Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    let extended = lease.extend(timing.long_ttl).await;
    if locks.capabilities().extend {
        extended.expect("a backend that declares extend can extend");
    } else {
        expect_error(
            extended,
            ErrorKind::Unsupported,
            "extend on a backend without it",
        );
    }
    lease.release().await.unwrap();
}

/// For backends without extension: auto-renewal is refused (TTL leases) or
/// left to the session (session leases).
async fn extend_is_refused_or_unneeded(locks: &Locker) {
    let timing = Timing::of(locks);
    let outcome = locks
        .acquire(
            &unique_name("no-extend"),
            Acquire::ttl(timing.ttl).auto_renew(),
        )
        .await;
    match locks.capabilities().lease {
        LeaseModel::Session => outcome.unwrap().release().await.unwrap(),
        _ => {
            expect_error(outcome, ErrorKind::Unsupported, "auto_renew without extend");
        }
    }
}
