//! 10,000 locks held at once by one backend: one session lease, one watch,
//! one connection per member — whatever the number of locks.

use std::sync::Arc;
use std::time::Duration;

use lockkit_core::{Acquire, LeaseState, Locker};
use lockkit_etcd::etcd_client::{Client, LeaseTimeToLiveOptions};
use lockkit_testkit::{connections_to, resident_kib, try_acquire_all};

mod common;
use common::{backend, cluster, namespace};

const TTL: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_locks_live_on_one_session_lease() {
    const LOCKS: usize = 10_000;
    const TASKS: usize = 64;
    let Some((url, members)) = cluster() else {
        return;
    };
    let backend = backend(&url, &namespace(), 10, Duration::from_secs(5)).await;
    let locks = Locker::new(backend.clone());
    let session = backend.session_lease().expect("a live session");
    let names: Arc<Vec<String>> = Arc::new((0..LOCKS).map(|i| format!("scale:{i}")).collect());
    let memory_before = resident_kib();
    let leases = try_acquire_all(&locks, Arc::clone(&names), TASKS, Acquire::ttl(TTL)).await;
    assert_eq!(leases.len(), LOCKS);
    let memory_after = resident_kib();
    let connections = connections_to(&members);
    // One to the leader while requests go there alone, else one per member.
    let most = if backend.pinned_member().is_some() {
        1
    } else {
        members.len()
    };
    assert!(
        connections <= most,
        "{LOCKS} locks took {connections} connections to {} members",
        members.len()
    );
    assert_eq!(
        backend.session_lease(),
        Some(session),
        "the session lease changed"
    );
    assert_eq!(backend.held(), LOCKS);

    let endpoints: Vec<String> = members
        .iter()
        .map(|member| format!("http://{member}"))
        .collect();
    let admin = Client::connect(endpoints, None).await.unwrap();
    let attached = admin
        .lease_client()
        .time_to_live(session, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(
        attached.keys().len(),
        LOCKS,
        "not every lock key is on the session lease"
    );
    if let (Some(before), Some(after)) = (memory_before, memory_after) {
        // Reported, not asserted: the allocator decides what RSS shows.
        eprintln!(
            "{LOCKS} locks held on 1 session lease over {connections} connections; \
             client resident memory {before} KiB -> {after} KiB (+{} KiB)",
            after.saturating_sub(before)
        );
    }

    // Close revokes the one lease: every key goes at once.
    locks.close().await.unwrap();
    assert!(leases.iter().all(|lease| lease.state() == LeaseState::Lost));
    let revoked = admin
        .lease_client()
        .time_to_live(session, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert!(revoked.keys().is_empty(), "keys outlived the revoked lease");
}
