//! Waiting in line at the lock's gate node, on the five real nodes of
//! `scripts/services`: waiters are served in the order they arrived, and
//! nobody jumps the line — neither a newcomer's acquire nor a try-acquire.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lockkit_core::{Acquire, Locker};
use lockkit_redlock::RedlockOptions;
use lockkit_testkit::unique_namespace;

mod common;

async fn clients(count: usize) -> Option<Vec<Locker>> {
    let nodes = common::nodes()?;
    let options = RedlockOptions::new().namespace(unique_namespace());
    let mut clients = Vec::new();
    for _ in 0..count {
        clients.push(Locker::new(common::backend(&nodes, options.clone()).await));
    }
    Some(clients)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_in_arrival_order() {
    let Some(clients) = clients(4).await else {
        return;
    };
    let ttl = Duration::from_secs(10);
    let held = clients[0].acquire("line", Acquire::ttl(ttl)).await.unwrap();
    let (served, mut order) = tokio::sync::mpsc::unbounded_channel();
    let mut waiters = Vec::new();
    for arrival in 0..6 {
        let (locks, served) = (clients[1 + arrival % 3].clone(), served.clone());
        waiters.push(tokio::spawn(async move {
            let lease = locks
                .acquire("line", Acquire::ttl(ttl).wait(Duration::from_secs(20)))
                .await
                .unwrap();
            served.send(arrival).unwrap();
            lease.release().await.unwrap();
        }));
        // No event says a waiter is in line; give each a head start.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    held.release().await.unwrap();
    for waiter in waiters {
        waiter.await.unwrap();
    }
    drop(served);
    let mut arrivals = Vec::new();
    while let Some(arrival) = order.recv().await {
        arrivals.push(arrival);
    }
    assert_eq!(
        arrivals,
        (0..6).collect::<Vec<_>>(),
        "served out of arrival order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_jumps_the_line() {
    let Some(clients) = clients(4).await else {
        return;
    };
    const WAITERS: usize = 12;
    let ttl = Duration::from_secs(10);
    let held = clients[0]
        .acquire("queue", Acquire::ttl(ttl))
        .await
        .unwrap();
    let granted = Arc::new(AtomicUsize::new(0));
    let mut waiters = Vec::new();
    for index in 0..WAITERS {
        let (locks, granted) = (clients[index % 3].clone(), granted.clone());
        waiters.push(tokio::spawn(async move {
            let lease = locks
                .acquire("queue", Acquire::ttl(ttl).wait(Duration::from_secs(20)))
                .await
                .unwrap();
            granted.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            lease.release().await.unwrap();
        }));
    }
    // Every waiter is in line before the holder lets go.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let newcomer = {
        let (locks, granted) = (clients[3].clone(), granted.clone());
        tokio::spawn(async move {
            let (mut jumps, mut tries) = (0, 0);
            while granted.load(Ordering::SeqCst) < WAITERS {
                tries += 1;
                if let Some(lease) = locks.try_acquire("queue", Acquire::ttl(ttl)).await.unwrap() {
                    // Held while a waiter that arrived earlier was not yet served.
                    if granted.load(Ordering::SeqCst) < WAITERS {
                        jumps += 1;
                    }
                    lease.release().await.unwrap();
                }
            }
            (jumps, tries)
        })
    };
    held.release().await.unwrap();
    for waiter in waiters {
        waiter.await.unwrap();
    }
    let (jumps, tries) = newcomer.await.unwrap();
    assert!(tries > 0, "the newcomer never tried");
    assert_eq!(
        jumps, 0,
        "try_acquire jumped the line {jumps} times in {tries} tries"
    );
}
