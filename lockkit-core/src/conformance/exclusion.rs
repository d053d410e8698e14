//! Mutual exclusion: one holder at a time, per name.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{expect_error, unique_name, Target, Timing};
use crate::{Acquire, ErrorKind, LeaseModel};

/// A held lock cannot be acquired again — not by another client, not by its own.
pub async fn exclusive_try_acquire(target: &impl Target) {
    let (first, second) = (target.client().await, target.client().await);
    let name = unique_name("exclusive");
    let options = Acquire::ttl(Timing::of(&first).long_ttl);
    let lease = first
        .try_acquire(&name, options)
        .await
        .unwrap()
        .expect("a free lock is granted");
    assert!(
        second.try_acquire(&name, options).await.unwrap().is_none(),
        "another client got a held lock"
    );
    assert!(
        first.try_acquire(&name, options).await.unwrap().is_none(),
        "locks are not reentrant"
    );
    lease.release().await.unwrap();
    let lease = second.try_acquire(&name, options).await.unwrap();
    assert!(lease.is_some(), "a released lock is free");
    lease.unwrap().release().await.unwrap();
}

/// Release frees the lock at once, and the next grant has a higher token.
pub async fn release_then_reacquire(target: &impl Target) {
    let locks = target.client().await;
    let name = unique_name("reacquire");
    let options = Acquire::ttl(Timing::of(&locks).long_ttl);
    let mut last = None;
    for _ in 0..5 {
        let lease = locks
            .try_acquire(&name, options)
            .await
            .unwrap()
            .expect("lock is free after release");
        assert!(
            Some(lease.fencing_token()) > last,
            "fencing token did not increase"
        );
        last = Some(lease.fencing_token());
        lease.release().await.unwrap();
    }
}

/// Locks of different names do not contend.
pub async fn distinct_names_do_not_contend(target: &impl Target) {
    let (first, second) = (target.client().await, target.client().await);
    let options = Acquire::ttl(Timing::of(&first).long_ttl);
    let held = first
        .try_acquire(&unique_name("distinct-a"), options)
        .await
        .unwrap()
        .unwrap();
    let other = second
        .try_acquire(&unique_name("distinct-b"), options)
        .await
        .unwrap();
    assert!(
        other.is_some(),
        "a different name was blocked by a held lock"
    );
    other.unwrap().release().await.unwrap();
    held.release().await.unwrap();
}

/// 16 tasks on 4 clients × 50 acquisitions of one name: never two holders,
/// and the fencing tokens a resource sees only increase.
pub async fn mutual_exclusion_under_contention(target: &impl Target) {
    const TASKS: usize = 16;
    const ROUNDS: usize = 50;
    let clients = [
        target.client().await,
        target.client().await,
        target.client().await,
        target.client().await,
    ];
    let name = unique_name("contention");
    let options = Acquire::ttl(Timing::of(&clients[0]).long_ttl).wait(Duration::from_secs(60));
    let inside = Arc::new(AtomicUsize::new(0));
    let resource_token = Arc::new(Mutex::new(0u64));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let locks = clients[task % clients.len()].clone();
        let (name, inside, resource_token) = (
            name.clone(),
            Arc::clone(&inside),
            Arc::clone(&resource_token),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let lease = locks
                    .acquire(&name, options)
                    .await
                    .expect("acquire under contention");
                let holders = inside.fetch_add(1, Ordering::SeqCst) + 1;
                assert_eq!(holders, 1, "two holders at once");
                {
                    let mut seen = resource_token.lock().unwrap();
                    assert!(
                        lease.fencing_token().get() > *seen,
                        "stale fencing token reached the resource"
                    );
                    *seen = lease.fencing_token().get();
                }
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
                lease.release().await.expect("release under contention");
            }
        }));
    }
    for task in tasks {
        task.await.expect("contending task");
    }
    assert_eq!(inside.load(Ordering::SeqCst), 0);
}

/// 1,000 locks held at once by one client, each exclusive, all released.
pub async fn thousand_locks_held_at_once(target: &impl Target) {
    let (first, second) = (target.client().await, target.client().await);
    let options = Acquire::ttl(Timing::of(&first).long_ttl);
    let prefix = unique_name("thousand");
    let names: Vec<String> = (0..1000).map(|i| format!("{prefix}:{i}")).collect();
    let mut leases = Vec::with_capacity(names.len());
    for batch in names.chunks(100) {
        let mut acquires = tokio::task::JoinSet::new();
        for name in batch {
            let (locks, name) = (first.clone(), name.clone());
            acquires.spawn(async move { locks.try_acquire(&name, options).await });
        }
        while let Some(lease) = acquires.join_next().await {
            leases.push(lease.unwrap().unwrap().expect("a fresh name is free"));
        }
    }
    for name in names.iter().step_by(97) {
        assert!(
            second.try_acquire(name, options).await.unwrap().is_none(),
            "{name} was not held"
        );
    }
    for lease in leases {
        lease.release().await.unwrap();
    }
    for name in names.iter().step_by(97) {
        let lease = second.try_acquire(name, options).await.unwrap();
        assert!(lease.is_some(), "{name} stayed held after release");
        lease.unwrap().release().await.unwrap();
    }
}

/// `with_lock` runs the work while holding the lock and releases it after.
pub async fn with_lock_runs_work_then_releases(target: &impl Target) {
    let (first, second) = (target.client().await, target.client().await);
    let name = unique_name("with-lock");
    let options = Acquire::ttl(Timing::of(&first).long_ttl);
    let probe = second.clone();
    let value = first
        .with_lock(&name, options, |lease| {
            let name = name.clone();
            async move {
                let held_elsewhere = probe.try_acquire(&name, options).await.unwrap();
                assert!(
                    held_elsewhere.is_none(),
                    "the lock was free during with_lock"
                );
                lease.fencing_token().get()
            }
        })
        .await
        .unwrap();
    assert!(value >= 1);
    let after = second.try_acquire(&name, options).await.unwrap();
    assert!(after.is_some(), "with_lock did not release");
    after.unwrap().release().await.unwrap();
}

/// `with_lock` cancels work that outlives the lease — its TTL, or its
/// session (closed mid-work) — and reports `NotHeld`.
pub async fn with_lock_cancels_work_when_the_lease_is_lost(target: &impl Target) {
    let locks = target.client().await;
    let timing = Timing::of(&locks);
    let name = unique_name("with-lock-lost");
    let session = locks.capabilities().lease == LeaseModel::Session;
    let closer = locks.clone();
    let started = std::time::Instant::now();
    let outcome = locks
        .with_lock(&name, Acquire::ttl(timing.ttl), |_lease| async move {
            if session {
                closer.close().await.unwrap();
            }
            tokio::time::sleep(timing.long_ttl).await;
            "finished"
        })
        .await;
    let error = expect_error(outcome, ErrorKind::NotHeld, "with_lock past the lease");
    assert!(
        error.message().contains(&name),
        "error does not name the lock: {error}"
    );
    assert!(
        started.elapsed() < timing.ttl * 5,
        "work ran on long after the lease was lost"
    );
}

/// Names that look alike are different locks: numeric spellings (`#42`,
/// `#042`, `#+42`), case, Unicode normalization forms, surrounding spaces.
/// A backend may refuse a spelling with `InvalidInput` (one that would
/// alias another), but never grants two of them as one lock.
pub async fn look_alike_names_are_distinct_locks(target: &impl Target) {
    let locks = target.client().await;
    let options = Acquire::ttl(Timing::of(&locks).long_ttl);
    let base = unique_name("look-alike");
    // A number no other run uses, for the `#<integer>` spellings that some
    // backends read as explicit keys outside any namespace.
    let hex = crate::OwnerToken::generate().unwrap().to_hex();
    let number = 1_000_000 + u64::from_str_radix(&hex[..12], 16).unwrap();
    let groups: Vec<Vec<String>> = vec![
        vec![
            format!("#{number}"),
            format!("#0{number}"),
            format!("#00{number}"),
            format!("#+{number}"),
            format!("# {number}"),
        ],
        vec![format!("#-{number}"), format!("#-0{number}")],
        vec![
            format!("{base}:42"),
            format!("{base}:042"),
            format!("{base}:+42"),
        ],
        vec![
            format!("{base}:job"),
            format!("{base}:JOB"),
            format!("{base}:Job"),
        ],
        // NFC, NFD, and a compatibility form.
        vec![
            format!("{base}:caf\u{e9}"),
            format!("{base}:cafe\u{301}"),
            format!("{base}:\u{fb01}le"),
            format!("{base}:file"),
        ],
        vec![
            format!("{base}:x"),
            format!("{base}:x "),
            format!("{base}: x"),
            format!("{base}:x\u{a0}"),
        ],
    ];
    for group in groups {
        let mut held: Vec<(String, crate::Lease)> = Vec::new();
        for name in &group {
            match locks.try_acquire(name, options).await {
                Ok(Some(lease)) => held.push((name.clone(), lease)),
                Ok(None) => {
                    let others: Vec<&str> = held.iter().map(|(name, _)| name.as_str()).collect();
                    panic!("`{name}` shares a lock with one of {others:?}")
                }
                Err(error) if error.kind() == ErrorKind::InvalidInput => {
                    assert!(
                        error.message().contains("name"),
                        "a refusal must name the field: {error}"
                    );
                }
                Err(error) => panic!("`{name}`: {error}"),
            }
        }
        assert!(
            held.iter().any(|(name, _)| name == &group[0]),
            "the plain spelling `{}` was refused",
            group[0]
        );
        for (_, lease) in held {
            lease.release().await.unwrap();
        }
    }
}
