//! Failures on the five real nodes of `scripts/services`: nodes stopped,
//! paused and restarted empty (the nodes run without persistence, so a
//! restart forgets every key), and the sets of nodes `connect` refuses.
//! These tests stop shared servers, so they live in this binary alone and
//! take turns.

use std::time::{Duration, Instant};

use lockkit_core::{Acquire, ErrorKind, Locker};
use lockkit_redlock::{RedlockBackend, RedlockOptions};
use lockkit_testkit::{acquire_when_back, restore_all, unique_namespace, Fault, Services};
use redis::AsyncCommands;
use tokio::sync::Mutex;

mod common;
use common::service;

/// One fault at a time: they share servers.
static TURN: Mutex<()> = Mutex::const_new(());

const NODE_TIMEOUT: Duration = Duration::from_millis(50);

struct Setup {
    nodes: Vec<String>,
    services: Services,
    namespace: String,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Setup {
    async fn new() -> Option<Self> {
        let nodes = common::nodes()?;
        let services = Services::from_env()?;
        Some(Self {
            nodes,
            services,
            namespace: unique_namespace(),
            _turn: TURN.lock().await,
        })
    }

    fn options(&self) -> RedlockOptions {
        RedlockOptions::new()
            .namespace(&self.namespace)
            .node_timeout(NODE_TIMEOUT)
    }

    async fn locker(&self) -> Locker {
        Locker::new(common::backend(&self.nodes, self.options()).await)
    }

    /// A plain connection to node `index`, to look at its keys.
    async fn raw(&self, index: usize) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.nodes[index].as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    fn lock_key(&self, name: &str) -> String {
        format!("{}:{{{name}}}", self.namespace)
    }

    fn stop(&self, indexes: &[usize]) -> Vec<Fault> {
        indexes
            .iter()
            .map(|&index| self.services.stop(&service(index)))
            .collect()
    }
}

/// The error of an acquire, or a panic naming what came instead.
#[track_caller]
fn refusal<T: std::fmt::Debug>(result: lockkit_core::Result<T>) -> lockkit_core::Error {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(error) => error,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_or_two_nodes_down_acquire_extend_and_release_still_work() {
    let Some(setup) = Setup::new().await else {
        return;
    };
    let (locks, other) = (setup.locker().await, setup.locker().await);
    let ttl = Duration::from_secs(5);
    let mut faults = Vec::new();
    for down in [4, 3] {
        faults.extend(setup.stop(&[down]));
        let name = format!("down:{down}");
        let lease =
            acquire_when_back(&locks, &name, Acquire::ttl(ttl), Duration::from_secs(5)).await;
        let before = lease.valid_until().unwrap();
        lease.extend(ttl * 2).await.unwrap();
        assert!(
            lease.valid_until().unwrap() > before,
            "extend did not move the bound"
        );
        assert!(
            other
                .try_acquire(&name, Acquire::ttl(ttl))
                .await
                .unwrap()
                .is_none(),
            "a second client got a held lock with {} nodes down",
            faults.len()
        );
        let token = lease.fencing_token();
        lease.release().await.unwrap();
        let next = other
            .try_acquire(&name, Acquire::ttl(ttl))
            .await
            .unwrap()
            .expect("released with nodes down, yet still held");
        assert!(next.fencing_token() > token);
        next.release().await.unwrap();
    }
    restore_all(faults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_three_nodes_down_acquire_fails_unavailable_naming_them() {
    let Some(setup) = Setup::new().await else {
        return;
    };
    let locks = setup.locker().await;
    let faults = setup.stop(&[2, 3, 4]);
    for wait in [None, Some(Duration::from_secs(10))] {
        let options = match wait {
            None => Acquire::ttl(Duration::from_secs(5)),
            Some(wait) => Acquire::ttl(Duration::from_secs(5)).wait(wait),
        };
        let started = Instant::now();
        let error = refusal(locks.acquire("three-down", options).await);
        let took = started.elapsed();
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
        assert!(error.is_retryable(), "{error}");
        for port in ["7003", "7004", "7005"] {
            assert!(error.message().contains(port), "{port} not named: {error}");
        }
        assert!(
            !error.message().contains("7001") && !error.message().contains("7002"),
            "a node that answered is named as failed: {error}"
        );
        assert!(
            took < NODE_TIMEOUT * 6,
            "took {took:?} to fail with three nodes down (node timeout {NODE_TIMEOUT:?})"
        );
    }
    restore_all(faults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_costs_little_and_its_late_grants_are_given_back() {
    let Some(setup) = Setup::new().await else {
        return;
    };
    let locks = setup.locker().await;
    let ttl = Duration::from_secs(20);
    let pause = setup.services.pause(&service(1));
    let names: Vec<String> = (0..10).map(|index| format!("paused:{index}")).collect();
    let mut leases = Vec::new();
    for name in &names {
        let started = Instant::now();
        let lease = locks.acquire(name, Acquire::ttl(ttl)).await.unwrap();
        let took = started.elapsed();
        assert!(
            took < NODE_TIMEOUT + Duration::from_millis(100),
            "an acquire took {took:?} with one node paused (node timeout {NODE_TIMEOUT:?})"
        );
        leases.push(lease);
    }
    // A grant that comes within the node timeout of an acquire's return
    // is kept (the lease holds that node too); these come later.
    tokio::time::sleep(NODE_TIMEOUT * 4).await;
    pause.restore();
    // The paused node runs the queued grants when it resumes, and then the
    // give-backs sent after them, while the leases stay held on the
    // others; nothing announces that, so look.
    let mut node = setup.raw(1).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut left = Vec::new();
        for name in &names {
            let exists: bool = node.exists(setup.lock_key(name)).await.unwrap();
            if exists {
                left.push(name.clone());
            }
        }
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "late grants on the resumed node were not given back: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for lease in leases {
        assert!(lease.remaining().is_some_and(|left| left > Duration::ZERO));
        lease.release().await.unwrap();
    }
}

/// The token property: grants on majorities {1,2,3} and then {3,4,5}
/// (nodes 4 and 5 stopped, then 1 and 2) — the second token is higher than
/// the first although nodes 4 and 5 came back empty, because node 3 kept
/// the first token's write-back. Node 1's fence starts far ahead, so the
/// first token comes from it alone and only the write-back carries it to 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_increase_across_majorities_that_share_one_node() {
    let Some(setup) = Setup::new().await else {
        return;
    };
    let name = "token-property";
    let fence_key = format!("{}:fence", setup.lock_key(name));
    let () = setup.raw(0).await.set(&fence_key, 1000).await.unwrap();
    let locks = setup.locker().await;
    let ttl = Duration::from_secs(5);

    let down = setup.stop(&[3, 4]);
    let first = acquire_when_back(&locks, name, Acquire::ttl(ttl), Duration::from_secs(5)).await;
    let first_token = first.fencing_token();
    assert!(
        first_token.get() > 1000,
        "the first token {first_token} is not node 1's"
    );
    first.release().await.unwrap();
    restore_all(down).await;
    let fences: Vec<Option<u64>> = {
        let mut fences = Vec::new();
        for index in 3..5 {
            fences.push(setup.raw(index).await.get(&fence_key).await.unwrap());
        }
        fences
    };
    assert_eq!(
        fences,
        [None, None],
        "nodes 4 and 5 came back with their data"
    );

    let down = setup.stop(&[0, 1]);
    let second = acquire_when_back(&locks, name, Acquire::ttl(ttl), Duration::from_secs(5)).await;
    assert!(
        second.fencing_token() > first_token,
        "majority {{3,4,5}} handed out {} after {{1,2,3}} handed out {first_token}",
        second.fencing_token()
    );
    second.release().await.unwrap();
    restore_all(down).await;
}

/// A node killed and started again without its data: while a majority kept
/// theirs, a held lock stays held (one holder) and tokens keep increasing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_empty_leaves_one_holder_and_increasing_tokens() {
    let Some(setup) = Setup::new().await else {
        return;
    };
    let (locks, other) = (setup.locker().await, setup.locker().await);
    let ttl = Duration::from_secs(10);
    let name = "restarted-empty";
    let mut last = 0;
    for _ in 0..3 {
        let lease = locks.acquire(name, Acquire::ttl(ttl)).await.unwrap();
        last = lease.fencing_token().get();
        lease.release().await.unwrap();
    }
    let held = locks.acquire(name, Acquire::ttl(ttl)).await.unwrap();
    assert!(held.fencing_token().get() > last);
    last = held.fencing_token().get();
    setup.services.kill(&service(2)).restore();
    let blocked = acquire_or_refused(&other, name).await;
    assert!(
        blocked.is_none(),
        "a second holder while four nodes kept the lock"
    );
    held.release().await.unwrap();
    let next = acquire_when_back(&other, name, Acquire::ttl(ttl), Duration::from_secs(5)).await;
    assert!(
        next.fencing_token().get() > last,
        "token {} after {last}, with one node restarted empty",
        next.fencing_token()
    );
    next.release().await.unwrap();
}

/// A try-acquire of a held lock: `None`, once the restarted node answers
/// or fails (either way a majority refuses).
async fn acquire_or_refused(locks: &Locker, name: &str) -> Option<lockkit_core::Lease> {
    locks
        .try_acquire(name, Acquire::ttl(Duration::from_secs(10)))
        .await
        .expect("four nodes answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refuses_sets_of_nodes_that_are_no_redlock() {
    let Some(setup) = Setup::new().await else {
        return;
    };
    let nodes = &setup.nodes;
    let config_error = |outcome: lockkit_core::Result<RedlockBackend>, what: &str| {
        let error = refusal(outcome);
        assert_eq!(error.kind(), ErrorKind::Config, "{what}: {error}");
        error.message().to_owned()
    };
    let two = config_error(
        RedlockBackend::connect_nodes(&nodes[..2], setup.options()).await,
        "two nodes",
    );
    assert!(two.contains("at least 3"), "{two}");
    let twice = [nodes[0].clone(), nodes[1].clone(), nodes[0].clone()];
    let message = config_error(
        RedlockBackend::connect_nodes(&twice, setup.options()).await,
        "one node twice",
    );
    assert!(
        message.contains("named twice") && message.contains("7001"),
        "{message}"
    );
    // One server under two names: only its run_id tells.
    let alias = nodes[0].replace("127.0.0.1", "localhost");
    let aliased = [nodes[0].clone(), nodes[1].clone(), alias];
    let message = config_error(
        RedlockBackend::connect_nodes(&aliased, setup.options()).await,
        "one server under two names",
    );
    assert!(
        message.contains("one server") && message.contains("run_id"),
        "{message}"
    );
    if let Some(failover) = lockkit_testkit::server_from_env("LOCKKIT_TEST_REDIS_FAILOVER") {
        let replica = failover.split(',').nth(1).unwrap().to_owned();
        let with_replica = [nodes[0].clone(), nodes[1].clone(), replica];
        let message = config_error(
            RedlockBackend::connect_nodes(&with_replica, setup.options()).await,
            "a replica",
        );
        assert!(message.contains("replica"), "{message}");
    }
    let message = config_error(
        RedlockBackend::connect("redlock://127.0.0.1:7001/1,127.0.0.1:7002,127.0.0.1:7003").await,
        "a path",
    );
    assert!(message.contains("path"), "{message}");
}
