//! Waiting: prompt handoff, deadlines, and cancellation and drop leaving nothing behind.

use std::time::{Duration, Instant};

use super::{expect_error, unique_name, Target, Timing};
use crate::{Acquire, ErrorKind, LeaseModel, WaitMode};

/// A blocked waiter gets the lock promptly after release: within 50 ms for
/// backends that notify or queue waiters, within one TTL for polling ones;
/// and its validity, like any grant's, lies within
/// [waiting began + ttl − drift, granted + ttl].
pub async fn waiter_acquires_promptly_after_release(target: &impl Target) {
    let (holder, waiter) = (target.client().await, target.client().await);
    let timing = Timing::of(&holder);
    let name = unique_name("handoff");
    let held = holder
        .acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    let waiting_began = Instant::now();
    let waiting = {
        let name = name.clone();
        tokio::spawn(async move {
            let lease = waiter
                .acquire(&name, Acquire::ttl(timing.long_ttl).wait(timing.long_ttl))
                .await;
            (lease, Instant::now())
        })
    };
    let mut waiting = Box::pin(waiting);
    let early = tokio::time::timeout(Duration::from_millis(100), &mut waiting).await;
    assert!(early.is_err(), "the waiter got a held lock");
    let released_at = Instant::now();
    held.release().await.unwrap();
    let (lease, granted_at) = waiting.await.unwrap();
    let lease = lease.expect("the waiter gets the released lock");
    let handoff = granted_at - released_at;
    let bound = match holder.capabilities().waiting {
        WaitMode::Poll => timing.ttl,
        _ => Duration::from_millis(50),
    };
    assert!(
        handoff <= bound,
        "handoff took {handoff:?}, bound {bound:?}"
    );
    // A session lease's bound is its session's, whatever the TTL asked.
    let ttl_bound = lease
        .valid_until()
        .filter(|_| holder.capabilities().lease == LeaseModel::Ttl);
    if let Some(valid_until) = ttl_bound {
        assert!(
            valid_until <= granted_at + timing.long_ttl,
            "a waited-for grant's validity runs past its reply + ttl"
        );
        let drift = holder.capabilities().drift_for(timing.long_ttl);
        assert!(
            valid_until >= waiting_began + timing.long_ttl - drift,
            "a waited-for grant's validity starts before the wait did"
        );
    }
    lease.release().await.unwrap();
}

/// A wait with a deadline fails with `Timeout` close to the deadline — not
/// before it, and not long after.
pub async fn wait_deadline_returns_timeout_near_it(target: &impl Target) {
    let (holder, waiter) = (target.client().await, target.client().await);
    let timing = Timing::of(&holder);
    let name = unique_name("deadline");
    let held = holder
        .acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    let deadline = timing.ttl * 2;
    let started = Instant::now();
    let outcome = waiter
        .acquire(&name, Acquire::ttl(timing.long_ttl).wait(deadline))
        .await;
    let waited = started.elapsed();
    let error = expect_error(outcome, ErrorKind::Timeout, "wait on a held lock");
    assert!(
        error.message().contains(&name),
        "error does not name the lock: {error}"
    );
    assert!(error.is_retryable());
    assert!(
        waited >= deadline,
        "gave up after {waited:?}, before the deadline {deadline:?}"
    );
    assert!(
        waited <= deadline + Duration::from_millis(250),
        "gave up {waited:?} after a {deadline:?} deadline"
    );
    let still_held = waiter
        .try_acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    assert!(
        still_held.is_none(),
        "the timed-out waiter left the lock free"
    );
    held.release().await.unwrap();
}

/// Acquires cancelled at any point — waiting or in flight — leave no lock
/// held beyond its TTL, and do not stall later waiters.
pub async fn cancelled_acquire_leaves_nothing_held(target: &impl Target) {
    let (holder, canceller, next) = (
        target.client().await,
        target.client().await,
        target.client().await,
    );
    let timing = Timing::of(&holder);
    let name = unique_name("cancelled");
    let held = holder
        .acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    for _ in 0..3 {
        let cancelled = tokio::time::timeout(
            Duration::from_millis(20),
            canceller.acquire(&name, Acquire::ttl(timing.ttl)),
        )
        .await;
        assert!(cancelled.is_err(), "a waiter got a held lock");
    }
    // A waiter that queued, was woken by the release and is dropped before
    // taking the lock must hand its turn on.
    let mut woken_then_dropped = Box::pin(canceller.acquire(&name, Acquire::ttl(timing.long_ttl)));
    let first_poll = tokio::time::timeout(Duration::from_millis(20), &mut woken_then_dropped).await;
    assert!(first_poll.is_err(), "a waiter got a held lock");
    let queued = {
        let (next, name) = (next.clone(), name.clone());
        tokio::spawn(async move {
            next.acquire(&name, Acquire::ttl(timing.long_ttl).wait(timing.long_ttl))
                .await
        })
    };
    let mut queued = Box::pin(queued);
    let early = tokio::time::timeout(Duration::from_millis(50), &mut queued).await;
    assert!(early.is_err(), "a waiter got a held lock");
    held.release().await.unwrap();
    drop(woken_then_dropped);
    let lease = tokio::time::timeout(Duration::from_secs(5), queued)
        .await
        .expect("cancelled waiters stalled the queue")
        .unwrap()
        .unwrap();
    lease.release().await.unwrap();

    // Cancel uncontended acquires at every point of their flight; whatever
    // a cancelled one may have been granted lapses within its TTL.
    for step in 0..40u64 {
        let attempt = tokio::time::timeout(
            Duration::from_micros(step * 25),
            canceller.acquire(&name, Acquire::ttl(timing.ttl)),
        )
        .await;
        if let Ok(lease) = attempt {
            lease.unwrap().release().await.unwrap();
        }
    }
    let lease = next
        .acquire(&name, Acquire::ttl(timing.long_ttl).wait(timing.ttl * 3))
        .await
        .expect("a cancelled acquire left the lock held past its TTL");
    lease.release().await.unwrap();
}

/// A waiter woken by a release and dropped at any point of taking the lock
/// — its attempt in flight, its grant arriving, whatever it does after
/// that before returning — leaves nothing held: the next waiter gets the
/// lock long before the cancelled one's TTL.
pub async fn woken_waiter_cancelled_while_taking_the_lock_leaves_nothing_held(
    target: &impl Target,
) {
    let (holder, canceller, next) = (
        target.client().await,
        target.client().await,
        target.client().await,
    );
    let timing = Timing::of(&holder);
    let name = unique_name("woken-cancelled");
    for step in 0..16u64 {
        let held = holder
            .acquire(&name, Acquire::ttl(timing.long_ttl))
            .await
            .unwrap();
        let mut waiter =
            Box::pin(canceller.acquire(&name, Acquire::ttl(timing.long_ttl).wait(timing.long_ttl)));
        // No event says the waiter is waiting; give it a head start.
        let early = tokio::time::timeout(Duration::from_millis(20), &mut waiter).await;
        assert!(early.is_err(), "a waiter got a held lock");
        held.release().await.unwrap();
        if let Ok(lease) =
            tokio::time::timeout(Duration::from_micros(step * 250), &mut waiter).await
        {
            lease.unwrap().release().await.unwrap();
        }
        drop(waiter);
        let lease = next
            .acquire(
                &name,
                Acquire::ttl(timing.long_ttl).wait(Duration::from_secs(5)),
            )
            .await
            .expect("a waiter cancelled while taking the lock left it held");
        lease.release().await.unwrap();
    }
}

/// A lease dropped without release is released in the background, long
/// before its TTL.
pub async fn dropped_lease_frees_the_lock(target: &impl Target) {
    let (holder, next) = (target.client().await, target.client().await);
    let timing = Timing::of(&holder);
    let name = unique_name("dropped");
    let lease = holder
        .acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    drop(lease);
    let started = Instant::now();
    let lease = next
        .acquire(
            &name,
            Acquire::ttl(timing.long_ttl).wait(Duration::from_secs(5)),
        )
        .await
        .expect("a dropped lease was not released");
    assert!(started.elapsed() < timing.long_ttl / 2);
    lease.release().await.unwrap();
}

/// Waiters of a [`Fifo`](crate::Fairness::Fifo) backend get the lock in the
/// order they started waiting, each from its own client; on an unordered
/// backend every waiter still gets it.
pub async fn waiters_are_served_in_arrival_order(target: &impl Target) {
    const WAITERS: usize = 3;
    let holder = target.client().await;
    let timing = Timing::of(&holder);
    let name = unique_name("arrival-order");
    let held = holder
        .acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    let (served, mut order) = tokio::sync::mpsc::unbounded_channel();
    let mut waiters = Vec::new();
    for arrival in 0..WAITERS {
        let (client, served, name) = (target.client().await, served.clone(), name.clone());
        waiters.push(tokio::spawn(async move {
            let lease = client
                .acquire(&name, Acquire::ttl(timing.long_ttl).wait(timing.long_ttl))
                .await
                .expect("every waiter gets the lock");
            served.send(arrival).unwrap();
            lease.release().await.unwrap();
        }));
        // No event says a waiter is queued; give each a head start on the next.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    held.release().await.unwrap();
    for waiter in waiters {
        waiter.await.unwrap();
    }
    let mut arrivals = Vec::new();
    while let Ok(arrival) = order.try_recv() {
        arrivals.push(arrival);
    }
    assert_eq!(arrivals.len(), WAITERS);
    if holder.capabilities().fairness == crate::Fairness::Fifo {
        assert_eq!(
            arrivals,
            (0..WAITERS).collect::<Vec<_>>(),
            "a FIFO backend served waiters out of arrival order"
        );
    }
}
