//! Where a lease and a client end: dropped on any thread, closed while
//! busy. Both keep every promise whatever thread or runtime state they end in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{expect_error, unique_name, ProbedBackend, Target, Timing};
use crate::{Acquire, ErrorKind, LeaseState, Locker};

/// Acquires the free-again `name` within 10 s — long before any TTL of
/// the case could free it — and releases it; panics with `why` if not.
async fn granted_promptly(client: &Locker, name: &str, why: &str) {
    let timing = Timing::of(client);
    let started = Instant::now();
    let lease = client
        .acquire(
            name,
            Acquire::ttl(timing.long_ttl).wait(Duration::from_secs(10)),
        )
        .await
        .unwrap_or_else(|error| panic!("{why}: {error}"));
    assert!(started.elapsed() < timing.long_ttl / 2, "{why}");
    lease.release().await.unwrap();
}

/// A new client whose backend calls can be counted and made to fail.
async fn probed_client(target: &impl Target) -> (Arc<ProbedBackend>, Locker) {
    let client = target.client().await;
    let probe = Arc::new(ProbedBackend::new(Arc::clone(client.backend())));
    (Arc::clone(&probe), Locker::from_backend(probe))
}

/// A lease dropped on a thread with no tokio runtime is still released in
/// the background, long before its TTL: it reaches the runtime it was
/// granted on.
pub async fn lease_dropped_on_any_thread_is_released(target: &impl Target) {
    let (holder, next) = (target.client().await, target.client().await);
    let timing = Timing::of(&holder);
    let name = unique_name("dropped-elsewhere");
    let lease = holder
        .acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    std::thread::spawn(move || drop(lease))
        .join()
        .expect("dropping a lease on a plain thread panicked");
    granted_promptly(
        &next,
        &name,
        "a lease dropped outside a runtime was not released",
    )
    .await;

    // Dropped inside a short-lived runtime of another thread, which ends
    // at once: the release still runs on the client's own runtime.
    let lease = next
        .acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move { drop(lease) });
    })
    .join()
    .expect("dropping a lease in another runtime panicked");
    granted_promptly(
        &holder,
        &name,
        "a lease dropped in a short-lived runtime was not released",
    )
    .await;
}

/// `close` ends a waiting acquire with a clear error, stops renewals,
/// releases the leases it held (another client gets them at once, not at
/// their TTL) and marks them Lost, and every later call fails with a clear,
/// non-retryable error.
pub async fn close_ends_waits_renewals_and_later_calls(target: &impl Target) {
    let other = target.client().await;
    let (probe, closing) = probed_client(target).await;
    let timing = Timing::of(&closing);
    let (held, busy) = (unique_name("close-held"), unique_name("close-busy"));

    let blocker = other
        .acquire(&busy, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    let renewing = match closing.capabilities().extend {
        true => Acquire::ttl(timing.ttl * 3).auto_renew(),
        false => Acquire::ttl(timing.long_ttl),
    };
    let lease = closing.acquire(&held, renewing).await.unwrap();
    let waiting = tokio::spawn({
        let closing = closing.clone();
        let busy = busy.clone();
        async move { closing.acquire(&busy, Acquire::ttl(timing.long_ttl)).await }
    });
    // Nothing announces that the waiter has reached the backend's queue; a
    // close before that must end it all the same.
    tokio::time::sleep(Duration::from_millis(100)).await;

    closing.close().await.expect("close");
    let ended = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("a waiting acquire outlived close")
        .unwrap();
    let error = expect_error(ended, ErrorKind::Unavailable, "an acquire waiting at close");
    assert!(!error.is_retryable(), "{error}");
    assert!(error.message().contains("closed"), "{error}");

    assert_eq!(lease.state(), LeaseState::Lost, "close left a lease held");
    let taken = other
        .try_acquire(&held, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap()
        .expect("close did not release the lease it held");

    let later = closing
        .try_acquire(&unique_name("close-later"), Acquire::ttl(timing.long_ttl))
        .await;
    let error = expect_error(later, ErrorKind::Unavailable, "an acquire after close");
    assert!(!error.is_retryable(), "{error}");
    assert!(error.message().contains("closed"), "{error}");

    // No renewal reaches the backend after close: none in three of its periods.
    let extends = probe.extends();
    tokio::time::sleep(timing.ttl * 3).await;
    assert_eq!(probe.extends(), extends, "a renewal ran after close");

    taken.release().await.unwrap();
    blocker.release().await.unwrap();
}

/// A release whose caller stops waiting for it — a timeout around it, a
/// dropped `with_lock` — while it repeats a transient failure still frees
/// the lock, in the background.
pub async fn cancelled_release_still_frees_the_lock(target: &impl Target) {
    let (probe, holder) = probed_client(target).await;
    let next = target.client().await;
    let timing = Timing::of(&holder);
    let name = unique_name("cancelled-release");
    let lease = holder
        .acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    // The release fails as on a dropped connection, and is repeated until
    // its caller gives up on it.
    probe.fail_releases(true);
    let cut_off = tokio::time::timeout(Duration::from_millis(50), lease.release()).await;
    assert!(cut_off.is_err(), "the release did not repeat: {cut_off:?}");
    probe.fail_releases(false);
    granted_promptly(
        &next,
        &name,
        "a release cut off while repeating left the lock held",
    )
    .await;
}

/// A waiter ended by `close` leaves the lock's queue: when the holder
/// releases, the next client gets the lock at once, not at some TTL.
pub async fn close_withdraws_waiters_from_the_queue(target: &impl Target) {
    let (holder, closing, next) = (
        target.client().await,
        target.client().await,
        target.client().await,
    );
    let timing = Timing::of(&holder);
    let name = unique_name("close-withdraws");
    let held = holder
        .acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    let waiting = tokio::spawn({
        let (closing, name) = (closing.clone(), name.clone());
        async move {
            closing
                .acquire(&name, Acquire::ttl(timing.long_ttl).wait(timing.long_ttl))
                .await
        }
    });
    // Nothing announces that the waiter has joined the backend's queue.
    tokio::time::sleep(Duration::from_millis(200)).await;
    closing.close().await.unwrap();
    assert!(waiting.await.unwrap().is_err());
    held.release().await.unwrap();
    granted_promptly(
        &next,
        &name,
        "a waiter ended by close still stood in the queue",
    )
    .await;
}

/// Clones closing at once: each returns only when every lease is released.
pub async fn concurrent_closes_release_everything(target: &impl Target) {
    const LEASES: usize = 20;
    let (closing, other) = (target.client().await, target.client().await);
    let timing = Timing::of(&closing);
    let base = unique_name("concurrent-close");
    let mut leases = Vec::new();
    for i in 0..LEASES {
        let lease = closing
            .acquire(&format!("{base}:{i}"), Acquire::ttl(timing.long_ttl))
            .await
            .unwrap();
        leases.push(lease);
    }
    let (first, second) = (closing.clone(), closing.clone());
    let (first, second) = tokio::join!(
        tokio::spawn(async move { first.close().await }),
        tokio::spawn(async move { second.close().await }),
    );
    first.unwrap().unwrap();
    second.unwrap().unwrap();
    for i in 0..LEASES {
        other
            .try_acquire(&format!("{base}:{i}"), Acquire::ttl(timing.long_ttl))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("lease {i} was still held after both closes returned"))
            .release()
            .await
            .unwrap();
    }
    drop(leases);
}

/// `close` waits for a release already repeating after a transient
/// failure, rather than closing the connection under it.
pub async fn close_waits_for_a_release_under_way(target: &impl Target) {
    let (probe, closing) = probed_client(target).await;
    let other = target.client().await;
    let timing = Timing::of(&closing);
    let name = unique_name("close-during-release");
    let lease = closing
        .acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    probe.fail_releases(true);
    let releasing = tokio::spawn(lease.release());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let close = tokio::spawn({
        let closing = closing.clone();
        async move { closing.close().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    probe.fail_releases(false);
    close.await.unwrap().unwrap();
    releasing
        .await
        .unwrap()
        .expect("the release under way at close succeeded");
    other
        .try_acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap()
        .expect("close cut off a release under way")
        .release()
        .await
        .unwrap();
}

/// A release whose reply was lost is repeated; the repeat finds the lock
/// already released by the first attempt, and the release reports success
/// (the lease was still valid, so nothing else could have freed it).
pub async fn release_with_a_lost_reply_reports_released(target: &impl Target) {
    let (probe, holder) = probed_client(target).await;
    let next = target.client().await;
    let timing = Timing::of(&holder);
    let name = unique_name("lost-release-reply");
    let lease = holder
        .acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    let view = lease.view();
    probe.lose_release_replies(1);
    lease
        .release()
        .await
        .expect("a release whose first reply was lost");
    assert_eq!(view.state(), LeaseState::Released);
    granted_promptly(&next, &name, "the lost-reply release did not free the lock").await;
}
