//! Validity: TTL expiry, extension, the monotonic bound and the lost signal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{expect_error, unique_name, ProbedBackend, Target, Timing};
use crate::{Acquire, ErrorKind, LeaseModel, LeaseState, Locker};

/// An unreleased lock frees itself: at its TTL, or when its client closes
/// (session backends) — and never before its holder's validity ends.
pub async fn expiry_frees_the_lock(target: &impl Target) {
    let (first, second) = (target.client().await, target.client().await);
    let timing = Timing::of(&first);
    let name = unique_name("expiry");
    let held = first
        .acquire(&name, Acquire::ttl(timing.ttl))
        .await
        .unwrap();
    if first.capabilities().lease == LeaseModel::Session {
        first.close().await.unwrap();
    }
    let next = second
        .acquire(&name, Acquire::ttl(timing.long_ttl).wait(timing.ttl * 20))
        .await
        .expect("an expired lock is granted again");
    // A TTL lease's bound is when it expires; a session lease ended when
    // its client closed, before any bound it had.
    let ttl_bound = held
        .valid_until()
        .filter(|_| first.capabilities().lease == LeaseModel::Ttl);
    if let Some(bound) = ttl_bound {
        let granted = Instant::now();
        assert!(
            granted >= bound,
            "granted again before the holder's validity ended"
        );
        let late = granted - bound;
        assert!(
            late <= timing.ttl + Duration::from_millis(100),
            "granted {late:?} after the holder expired"
        );
    }
    assert_eq!(held.state(), LeaseState::Lost);
    next.release().await.unwrap();
    assert!(
        held.release().await.is_err(),
        "release of an expired lease reported success"
    );
}

/// `valid_until` lies within [sent + ttl − drift, returned + ttl].
pub async fn validity_is_measured_from_request_send(target: &impl Target) {
    let locks = target.client().await;
    let capabilities = locks.capabilities().clone();
    let ttl = Timing::of(&locks).long_ttl;
    let before = Instant::now();
    let lease = locks
        .acquire(&unique_name("validity"), Acquire::ttl(ttl))
        .await
        .unwrap();
    let after = Instant::now();
    match (capabilities.lease, lease.valid_until()) {
        (LeaseModel::Ttl, Some(bound)) => {
            assert!(
                bound <= after + ttl,
                "validity measured from after the reply"
            );
            assert!(
                bound >= before + ttl - capabilities.drift_for(ttl),
                "validity shorter than ttl − drift"
            );
            assert!(lease.remaining().unwrap() <= ttl);
        }
        (LeaseModel::Session, Some(bound)) => {
            // The bound of its session's last confirmed heartbeat: the
            // acquire's TTL bounds no session lease.
            assert!(
                capabilities.session_timeout,
                "a session lease has a bound, yet the backend says its sessions never time out"
            );
            assert!(bound > after, "a fresh session lease is past its bound");
        }
        (LeaseModel::Session, None) => assert!(
            !capabilities.session_timeout,
            "the server times this backend's sessions out, yet its session lease has no bound"
        ),
        (LeaseModel::Ttl, None) => panic!("a TTL lease has no validity bound"),
    }
    lease.release().await.unwrap();
}

/// Extending moves the validity bound; the lock stays held past the old one.
pub async fn extend_prolongs_validity(target: &impl Target) {
    let (locks, probe) = (target.client().await, target.client().await);
    let timing = Timing::of(&locks);
    let name = unique_name("extend");
    let lease = locks
        .acquire(&name, Acquire::ttl(timing.ttl))
        .await
        .unwrap();
    if !locks.capabilities().extend {
        expect_error(
            lease.extend(timing.ttl).await,
            ErrorKind::Unsupported,
            "extend",
        );
        lease.release().await.unwrap();
        return;
    }
    if locks.capabilities().lease == LeaseModel::Session && !locks.capabilities().session_timeout {
        // A session that lives until its connection closes has no bound to
        // move: extend confirms the session still holds the lock.
        assert_eq!(lease.valid_until(), None, "a session lease has no bound");
        lease.extend(timing.ttl * 4).await.unwrap();
        assert_eq!(lease.valid_until(), None, "extend invented a bound");
        assert_eq!(lease.state(), LeaseState::Held);
        let blocked = probe
            .try_acquire(&name, Acquire::ttl(timing.ttl))
            .await
            .unwrap();
        assert!(blocked.is_none(), "extend freed the lock");
        lease.release().await.unwrap();
        return;
    }
    let first_bound = lease
        .valid_until()
        .expect("a lease that extends has a bound");
    lease.extend(timing.ttl * 4).await.unwrap();
    let extended = lease.valid_until().unwrap();
    assert!(extended > first_bound, "extend did not move the bound");
    tokio::time::sleep_until((first_bound + timing.ttl / 2).into()).await;
    assert_eq!(
        lease.state(),
        LeaseState::Held,
        "lease lost at its old bound"
    );
    let blocked = probe
        .try_acquire(&name, Acquire::ttl(timing.ttl))
        .await
        .unwrap();
    assert!(
        blocked.is_none(),
        "lock free at its old bound despite extend"
    );
    lease.release().await.unwrap();
}

/// `not_held` and `lost` resolve at the validity bound, not before, and the state says Lost.
pub async fn lost_signal_fires_on_expiry(target: &impl Target) {
    let locks = target.client().await;
    let timing = Timing::of(&locks);
    let lease = locks
        .acquire(&unique_name("lost-signal"), Acquire::ttl(timing.ttl))
        .await
        .unwrap();
    assert_eq!(lease.state(), LeaseState::Held);
    if locks.capabilities().lease == LeaseModel::Session {
        locks.close().await.unwrap();
    }
    let state = tokio::time::timeout(timing.ttl * 20, lease.not_held())
        .await
        .expect("not_held never resolved");
    assert_eq!(state, LeaseState::Lost);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(1), lease.lost()).await,
        Ok(LeaseState::Lost)
    );
    // A session lease ended when its client closed, before any bound.
    let ttl_bound = lease
        .valid_until()
        .filter(|_| locks.capabilities().lease == LeaseModel::Ttl);
    if let Some(bound) = ttl_bound {
        assert!(
            Instant::now() >= bound,
            "lost signal fired before the bound"
        );
    }
    assert_eq!(lease.state(), LeaseState::Lost);
    assert!(!lease.is_held());
    assert!(
        lease.release().await.is_err(),
        "release of a lost lease reported success"
    );
}

/// An extension the server made but whose reply came after the lease's
/// bound leaves the lease Lost — its observers were told so, and a lease
/// that saw Lost never sees Held — and `extend` reports `NotHeld`. The
/// lease's release still frees the lock the server extended.
pub async fn an_extension_answered_after_the_bound_leaves_the_lease_lost(target: &impl Target) {
    let (client, other) = (target.client().await, target.client().await);
    let capabilities = client.capabilities();
    if !capabilities.extend || capabilities.lease == LeaseModel::Session {
        // Nothing to extend (the Unsupported path is checked by
        // extend_prolongs_validity), or no bound of the lease's own.
        return;
    }
    let probe = Arc::new(ProbedBackend::new(Arc::clone(client.backend())));
    let locks = Locker::from_backend(probe.clone());
    let timing = Timing::of(&locks);
    let name = unique_name("late-extend");
    let lease = locks
        .acquire(&name, Acquire::ttl(timing.ttl))
        .await
        .unwrap();
    let bound = lease.valid_until().expect("a TTL lease has a bound");
    let lost = tokio::spawn({
        let view = lease.view();
        async move { view.lost().await }
    });
    probe.delay_extend_replies(bound.saturating_duration_since(Instant::now()) + timing.ttl / 2);
    expect_error(
        lease.extend(timing.long_ttl).await,
        ErrorKind::NotHeld,
        "an extension answered after the bound",
    );
    assert_eq!(lost.await.unwrap(), LeaseState::Lost);
    assert_eq!(
        lease.state(),
        LeaseState::Lost,
        "a lease that saw Lost is Held again"
    );
    assert!(
        lease.release().await.is_err(),
        "release of a lost lease reported success"
    );
    let next = other
        .try_acquire(&name, Acquire::ttl(timing.ttl))
        .await
        .unwrap()
        .expect("the release of the late-extended lock did not free it");
    next.release().await.unwrap();
}
