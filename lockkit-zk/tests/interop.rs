//! lockkit and `zookeeper-client`'s Curator-prefixed lock — the layout of
//! Curator's `InterProcessMutex` — on one name of the real ensemble: they
//! exclude each other, either way round, and hand over in arrival order.

use std::time::Duration;

use lockkit_core::{Acquire, Locker};
use lockkit_zk::zookeeper_client::{Acls, Client, CreateMode, LockClient, LockOptions, LockPrefix};
use lockkit_zk::ZkBackend;

mod common;
use common::{backend, ensemble, lock_nodes, namespace};

const TTL: Duration = Duration::from_secs(30);

/// A lockkit client of the ensemble, and a driver client for the peer lock.
async fn clients() -> Option<(ZkBackend, Locker, Client, Vec<String>)> {
    let (url, servers) = ensemble()?;
    let backend = backend(
        &url,
        &namespace(),
        Duration::from_secs(10),
        Duration::from_secs(2),
    )
    .await;
    let peer = Client::connect(&servers.join(","))
        .await
        .expect("connect to the test ZooKeeper ensemble");
    Some((backend.clone(), Locker::new(backend), peer, servers))
}

/// `zookeeper-client`'s lock of `dir`, Curator-prefixed (`_c_<uuid>-lock-`),
/// creating its parents as containers, as Curator does.
async fn peer_lock<'a>(peer: &'a Client, dir: &'a str) -> LockClient<'a> {
    let options = LockOptions::new(Acls::anyone_all())
        .with_ancestor_options(CreateMode::Container.with_acls(Acls::anyone_all()))
        .unwrap();
    peer.lock(
        LockPrefix::new_curator(dir, "lock-").unwrap(),
        b"peer",
        options,
    )
    .await
    .expect("the peer's lock")
}

/// The peer holds the name: lockkit's try finds it held, and its acquire
/// waits until the peer lets go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_holder_blocks_lockkit_until_it_lets_go() {
    let Some((backend, locks, peer, _)) = clients().await else {
        return;
    };
    let dir = backend.lock_path("interop:peer-first").unwrap();
    let held = peer_lock(&peer, &dir).await;
    let tried = locks
        .try_acquire("interop:peer-first", Acquire::ttl(TTL))
        .await
        .unwrap();
    assert!(tried.is_none(), "lockkit got a name the peer holds");
    let waiting = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .acquire(
                    "interop:peer-first",
                    Acquire::ttl(TTL).wait(Duration::from_secs(10)),
                )
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "lockkit got a name the peer holds");
    held.delete(held.lock_path(), None).await.unwrap();
    let lease = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("lockkit did not get the name after the peer let go")
        .unwrap()
        .unwrap();
    lease.release().await.unwrap();
}

/// lockkit holds the name: the peer waits until lockkit releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockkit_blocks_a_peer_until_it_releases() {
    let Some((backend, locks, peer, _)) = clients().await else {
        return;
    };
    let dir = backend.lock_path("interop:lockkit-first").unwrap();
    let lease = locks
        .acquire("interop:lockkit-first", Acquire::ttl(TTL))
        .await
        .unwrap();
    let granted = tokio::sync::Notify::new();
    let peer_side = async {
        let held = peer_lock(&peer, &dir).await;
        granted.notify_one();
        held.delete(held.lock_path(), None).await.unwrap();
    };
    let lockkit_side = async {
        let early = tokio::time::timeout(Duration::from_millis(300), granted.notified()).await;
        assert!(early.is_err(), "the peer got a name lockkit holds");
        lease.release().await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), granted.notified())
            .await
            .expect("the peer did not get the name after the release");
    };
    tokio::join!(peer_side, lockkit_side);
}

/// lockkit holds; the peer queues, then another lockkit owner: the release
/// goes to the peer, and the peer's to the lockkit owner — arrival order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockkit_and_the_peer_hand_over_in_arrival_order() {
    let Some((backend, locks, peer, servers)) = clients().await else {
        return;
    };
    let name = "interop:order";
    let dir = backend.lock_path(name).unwrap();
    let first = locks.acquire(name, Acquire::ttl(TTL)).await.unwrap();
    let (peer_granted, peer_done) = (tokio::sync::Notify::new(), tokio::sync::Notify::new());
    let peer_side = async {
        let held = peer_lock(&peer, &dir).await;
        peer_granted.notify_one();
        peer_done.notified().await;
        held.delete(held.lock_path(), None).await.unwrap();
    };
    let lockkit_side = async {
        wait_for_nodes(&servers, &dir, 2).await;
        let third = tokio::spawn({
            let locks = locks.clone();
            async move {
                locks
                    .acquire(name, Acquire::ttl(TTL).wait(Duration::from_secs(10)))
                    .await
            }
        });
        wait_for_nodes(&servers, &dir, 3).await;
        let first_token = first.fencing_token();
        first.release().await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), peer_granted.notified())
            .await
            .expect("the peer, second in line, did not get the name");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !third.is_finished(),
            "the third in line went before the peer"
        );
        peer_done.notify_one();
        let lease = tokio::time::timeout(Duration::from_secs(2), third)
            .await
            .expect("the third in line did not get the name after the peer")
            .unwrap()
            .unwrap();
        assert!(lease.fencing_token() > first_token);
        lease.release().await.unwrap();
    };
    tokio::join!(peer_side, lockkit_side);
}

/// Waits until `dir` has `count` lock nodes (a queued create has landed).
async fn wait_for_nodes(servers: &[String], dir: &str, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while lock_nodes(servers, dir).await.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "{dir} never had {count} nodes"
        );
        // The test has no event for another client's create: a short poll.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
