//! 10,000 locks held at once by one backend: one session, one connection —
//! whatever the number of locks.

use std::sync::Arc;
use std::time::Duration;

use lockkit_core::{Acquire, LeaseState, Locker};
use lockkit_testkit::{connections_to, resident_kib, try_acquire_all};
use lockkit_zk::zookeeper_client::Client;

mod common;
use common::{backend, ensemble, lock_nodes, namespace};

const TTL: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_locks_live_on_one_session() {
    const LOCKS: usize = 10_000;
    const TASKS: usize = 64;
    let Some((url, servers)) = ensemble() else {
        return;
    };
    let namespace = namespace();
    let backend = backend(
        &url,
        &namespace,
        Duration::from_secs(10),
        Duration::from_secs(5),
    )
    .await;
    let locks = Locker::new(backend.clone());
    let session = backend.session_id().expect("a live session");
    let names: Arc<Vec<String>> = Arc::new((0..LOCKS).map(|i| format!("scale:{i}")).collect());
    let memory_before = resident_kib();
    let leases = try_acquire_all(&locks, Arc::clone(&names), TASKS, Acquire::ttl(TTL)).await;
    assert_eq!(leases.len(), LOCKS);
    let memory_after = resident_kib();
    let connections = connections_to(&servers);
    assert_eq!(
        connections, 1,
        "{LOCKS} locks took {connections} connections"
    );
    assert_eq!(backend.session_id(), Some(session), "the session changed");
    assert_eq!(backend.held(), LOCKS);

    let admin = Client::connect(&servers.join(",")).await.unwrap();
    let root = format!("/{namespace}");
    // Every name's container and its one lock node.
    let nodes = admin.count_descendants_number(&root).await.unwrap();
    assert_eq!(nodes, 2 * LOCKS, "not one lock node per name under {root}");
    for name in names.iter().step_by(500) {
        let parent = backend.lock_path(name).unwrap();
        let node = lock_nodes(&servers, &parent).await;
        let stat = admin.check_stat(&node[0]).await.unwrap().unwrap();
        assert_eq!(
            stat.ephemeral_owner, session,
            "{} is not the session's",
            node[0]
        );
    }
    if let (Some(before), Some(after)) = (memory_before, memory_after) {
        // Reported, not asserted: the allocator decides what RSS shows.
        eprintln!(
            "{LOCKS} locks held on 1 session over {connections} connection; \
             client resident memory {before} KiB -> {after} KiB (+{} KiB)",
            after.saturating_sub(before)
        );
    }

    // Close ends the one session: every lock node goes at once.
    locks.close().await.unwrap();
    assert!(leases.iter().all(|lease| lease.state() == LeaseState::Lost));
    let left = admin.count_descendants_number(&root).await.unwrap();
    assert!(
        left <= LOCKS,
        "{left} nodes under {root}: lock nodes outlived the session"
    );
}
