//! Session liveness: a session's time bound limits its leases, and a
//! suspended session makes them Uncertain until it comes back.
//!
//! Driven here through [`ProbedBackend::on_session`], which puts every grant
//! of the backend under test on a session the case controls as well, so the
//! lease's side of the contract is checked on every backend. A backend whose
//! sessions a server times out (ZooKeeper, etcd) also runs them against its
//! real sessions, suspended by a fault.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{expect_error, unique_name, ProbedBackend, Target, Timing};
use crate::{Acquire, ErrorKind, Lease, LeaseState, Locker, SessionHealth, SessionSignal};

/// A lease held on a session the case drives, and another client.
struct OnSession {
    other: Locker,
    timing: Timing,
    signal: SessionSignal,
    name: String,
    lease: Lease,
}

/// Acquires a fresh name (with the long TTL) through a client of `target`
/// whose grants also live on a session of the case's own, alive for now.
async fn held_on_session(target: &impl Target, case: &str) -> OnSession {
    let other = target.client().await;
    let timing = Timing::of(&other);
    let signal = SessionSignal::alive_until(Instant::now() + timing.long_ttl);
    let client = target.client().await;
    let probe = ProbedBackend::new(Arc::clone(client.backend())).on_session(signal.watch());
    let locks = Locker::from_backend(Arc::new(probe));
    let name = unique_name(case);
    let lease = locks
        .acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    assert_eq!(lease.state(), LeaseState::Held);
    OnSession {
        other,
        timing,
        signal,
        name,
        lease,
    }
}

/// A lease is valid only until its session's bound: `valid_until` is the
/// earlier of its own bound and the session's, a confirmation moves it, and
/// a bound that passes unconfirmed makes the lease Lost by itself — not
/// before the bound, and for good. Its release then reports `NotHeld` and
/// still frees the lock.
pub async fn session_bound_limits_validity(target: &impl Target) {
    let OnSession {
        other,
        timing,
        signal,
        name,
        lease,
    } = held_on_session(target, "session-bound").await;

    // A heartbeat confirmed with a bound sooner than the lease's own.
    let bound = Instant::now() + timing.ttl * 3;
    signal.confirm(bound);
    assert_eq!(
        lease.valid_until(),
        Some(bound),
        "the lease's bound is not the session's earlier one"
    );
    assert_eq!(lease.state(), LeaseState::Held);

    // No confirmation comes: the bound alone ends the lease.
    let seen = tokio::time::timeout(timing.ttl * 20, lease.lost())
        .await
        .expect("the lease outlived its session's bound");
    assert_eq!(seen, LeaseState::Lost);
    assert!(
        Instant::now() >= bound,
        "the lease was lost before its session's bound"
    );
    signal.confirm(Instant::now() + timing.long_ttl);
    assert_eq!(
        lease.state(),
        LeaseState::Lost,
        "a confirmation after the bound brought a lost lease back"
    );
    assert_eq!(signal.health(), SessionHealth::Ended);

    expect_error(
        lease.release().await,
        ErrorKind::NotHeld,
        "release after the session's bound",
    );
    let next = other
        .try_acquire(&name, Acquire::ttl(timing.ttl))
        .await
        .unwrap()
        .expect("the release of a lost lease did not free the lock");
    next.release().await.unwrap();
}

/// A suspended session makes its lease Uncertain — still valid, the lock
/// still held at the server — and a session that comes back makes it Held
/// again, with the bound the new confirmation gave.
pub async fn suspended_session_makes_the_lease_uncertain_until_it_returns(target: &impl Target) {
    let OnSession {
        other,
        timing,
        signal,
        name,
        lease,
    } = held_on_session(target, "session-suspended").await;

    let noticed = tokio::spawn({
        let view = lease.view();
        async move { view.not_held().await }
    });
    signal.set(SessionHealth::Suspended);
    let seen = tokio::time::timeout(Duration::from_secs(1), noticed)
        .await
        .expect("not_held did not resolve on suspension")
        .unwrap();
    assert_eq!(seen, LeaseState::Uncertain);
    assert_eq!(lease.state(), LeaseState::Uncertain);
    let blocked = other
        .try_acquire(&name, Acquire::ttl(timing.ttl))
        .await
        .unwrap();
    assert!(
        blocked.is_none(),
        "the lock was free while its holder's session was only suspended"
    );

    // Not past the bound the backend's own session has now: a lease's
    // bound is the earliest of its watches'.
    let own = lease.valid_until();
    let back = own.map_or(Instant::now() + timing.long_ttl / 2, |own| {
        own.min(Instant::now() + timing.long_ttl / 2)
    });
    signal.confirm(back);
    assert_eq!(
        lease.state(),
        LeaseState::Held,
        "the lease stayed Uncertain after its session came back"
    );
    assert_eq!(lease.valid_until(), Some(back));
    lease.release().await.unwrap();
}
