//! Failure behaviour against the three-server ZooKeeper ensemble of
//! `scripts/services`: the leader killed, every server paused (shorter and
//! longer than the session timeout), the session expired by the server, a
//! lock node deleted by an operator, and a create whose answer is lost.
//! These tests stop the shared ensemble, so they live in this binary alone
//! and take turns.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use lockkit_core::{
    Acquire, AcquireRequest, Claim, LeaseState, LockBackend, LockName, Locker, OwnerToken, Wait,
};
use lockkit_testkit::{
    a_short_pause_leaves_the_lock_uncertain, acquire_when_back, held_within, restore_all, Fault,
    Services,
};
use lockkit_zk::zookeeper_client::Client;
use lockkit_zk::ZkBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

mod common;
use common::{backend, ensemble, leader, lock_nodes, namespace, zkcli};

/// One fault at a time: they share the ensemble.
static TURN: Mutex<()> = Mutex::const_new(());

/// The acquire TTL: not a bound on this backend.
const TTL: Duration = Duration::from_secs(30);

const SERVERS: [&str; 3] = ["zk-1", "zk-2", "zk-3"];

struct Setup {
    url: String,
    servers: Vec<String>,
    services: Services,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

async fn setup() -> Option<Setup> {
    let (url, servers) = ensemble()?;
    let services = Services::from_env()?;
    Some(Setup {
        url,
        servers,
        services,
        _turn: TURN.lock().await,
    })
}

/// Two clients of the ensemble under one fresh namespace, each on its own
/// session of `session_timeout`: the backends and their lockers.
struct Pair {
    mine: ZkBackend,
    locks: Locker,
    other: Locker,
}

async fn two_clients(url: &str, session_timeout: Duration, response_timeout: Duration) -> Pair {
    let namespace = namespace();
    let mine = backend(url, &namespace, session_timeout, response_timeout).await;
    let theirs = backend(url, &namespace, session_timeout, response_timeout).await;
    Pair {
        locks: Locker::new(mine.clone()),
        other: Locker::new(theirs),
        mine,
    }
}

/// The leader is killed: every server drops its clients for the election,
/// so the lease goes Uncertain (Curator's SUSPENDED), and Held again once
/// the session is back on a server — the same session, its lock still its
/// own, and nobody else got it meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_moves_the_session_and_keeps_every_lock() {
    let Some(setup) = setup().await else {
        return;
    };
    let Pair { mine, locks, other } =
        two_clients(&setup.url, Duration::from_secs(10), Duration::from_secs(2)).await;
    let held = locks
        .acquire("leader:held", Acquire::ttl(TTL))
        .await
        .unwrap();
    let session = mine.session_id();
    let view = held.view();

    let leader = leader(&setup.servers).await;
    let killed = setup.services.kill(&leader);
    let seen = tokio::time::timeout(Duration::from_secs(8), view.not_held())
        .await
        .expect("the lease stayed Held while the ensemble elected a leader");
    assert_eq!(seen, LeaseState::Uncertain);
    held_within(&held, Duration::from_secs(20)).await;
    assert_eq!(mine.session_id(), session, "the session was replaced");
    let blocked = other
        .try_acquire("leader:held", Acquire::ttl(TTL))
        .await
        .unwrap();
    assert!(blocked.is_none(), "two holders after the election");
    let after = locks
        .acquire("leader:after", Acquire::ttl(TTL))
        .await
        .unwrap();
    assert!(after.fencing_token() > held.fencing_token());
    after.release().await.unwrap();
    killed.restore();

    let token = held.fencing_token();
    held.release().await.unwrap();
    let next = other
        .acquire("leader:held", Acquire::ttl(TTL))
        .await
        .unwrap();
    assert!(next.fencing_token() > token);
    next.release().await.unwrap();
}

/// Every server paused past a heartbeat, then resumed before the session's
/// bound: the lease is Uncertain meanwhile, and Held again after — never
/// Lost — with the lock still its. The conformance case "suspend →
/// Uncertain → Held" done for real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_ensemble_makes_the_lease_uncertain_until_it_answers() {
    let Some(setup) = setup().await else {
        return;
    };
    let Pair { locks, other, .. } =
        two_clients(&setup.url, Duration::from_secs(10), Duration::from_secs(1)).await;
    a_short_pause_leaves_the_lock_uncertain(
        &setup.services,
        &SERVERS,
        &locks,
        &other,
        "paused:held",
    )
    .await;
}

/// Every server paused past the session timeout: the client hears nothing,
/// so its lease is Lost by its own bound — while the servers, paused, have
/// said nothing — and not before it. Resumed, the ensemble lets another
/// client have the lock with a higher token, and this backend acquires
/// again on a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hears_nothing_loses_its_leases_at_the_bound() {
    let Some(setup) = setup().await else {
        return;
    };
    let Pair { mine, locks, other } =
        two_clients(&setup.url, Duration::from_secs(4), Duration::from_secs(1)).await;
    let held = locks
        .acquire("silent:held", Acquire::ttl(TTL))
        .await
        .unwrap();
    let session = mine.session_id();

    let faults: Vec<Fault> = SERVERS
        .iter()
        .map(|server| setup.services.pause(server))
        .collect();
    let bound = held.valid_until().expect("a session bound");
    let lost = tokio::time::timeout(Duration::from_secs(8), held.lost())
        .await
        .expect("the lease outlived its session's bound");
    assert_eq!(lost, LeaseState::Lost);
    assert!(Instant::now() >= bound, "lost before the session's bound");
    restore_all(faults).await;

    let next = other
        .acquire(
            "silent:held",
            Acquire::ttl(TTL).wait(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    assert!(next.fencing_token() > held.fencing_token());
    next.release().await.unwrap();
    let again = acquire_when_back(
        &locks,
        "silent:again",
        Acquire::ttl(TTL),
        Duration::from_secs(20),
    )
    .await;
    assert_ne!(mine.session_id(), session, "the ended session was reused");
    again.release().await.unwrap();
}

/// The session expired by the server, as Curator's tests do it: a second
/// client attaches to it with its id and password, and closes it. Every
/// lease on it is Lost at once; another client then gets the lock with a
/// higher token, and this backend's next acquire opens a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_loses_every_lease_at_once() {
    let Some(setup) = setup().await else {
        return;
    };
    let Pair { mine, locks, other } =
        two_clients(&setup.url, Duration::from_secs(10), Duration::from_secs(2)).await;
    let first = locks.acquire("expire:1", Acquire::ttl(TTL)).await.unwrap();
    let second = locks.acquire("expire:2", Acquire::ttl(TTL)).await.unwrap();
    let info = mine.session_info().expect("a live session");
    let session = mine.session_id();

    let intruder = Client::connector()
        .with_session(info)
        .connect(&setup.servers.join(","))
        .await
        .expect("attach to the session");
    drop(intruder);
    for lease in [&first, &second] {
        let lost = tokio::time::timeout(Duration::from_secs(2), lease.lost()).await;
        assert_eq!(
            lost,
            Ok(LeaseState::Lost),
            "not lost within 2 s of the session's close"
        );
    }
    let next = other
        .acquire("expire:1", Acquire::ttl(TTL).wait(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(next.fencing_token() > first.fencing_token());
    next.release().await.unwrap();
    let again = locks.acquire("expire:2", Acquire::ttl(TTL)).await.unwrap();
    assert_ne!(mine.session_id(), session);
    assert!(again.fencing_token() > second.fencing_token());
    again.release().await.unwrap();
}

/// `zkCli.sh delete` of a held lock node: that lease is Lost within a
/// second, another lease of the session is not, and the next waiter gets
/// the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_node_loses_its_lease_and_the_next_waiter_gets_the_lock() {
    let Some(setup) = setup().await else {
        return;
    };
    let Pair { mine, locks, other } =
        two_clients(&setup.url, Duration::from_secs(10), Duration::from_secs(2)).await;
    let held = locks.acquire("del:held", Acquire::ttl(TTL)).await.unwrap();
    let kept = locks.acquire("del:kept", Acquire::ttl(TTL)).await.unwrap();
    let waiting = tokio::spawn({
        let other = other.clone();
        async move {
            other
                .acquire("del:held", Acquire::ttl(TTL).wait(Duration::from_secs(20)))
                .await
        }
    });
    let parent = mine.lock_path("del:held").unwrap();
    let nodes = wait_for_nodes(&setup.servers, &parent, 2).await;
    assert!(!waiting.is_finished(), "the waiter got a held lock");

    zkcli(&setup.servers, &["delete", &nodes[0]]).await;
    let lost = tokio::time::timeout(Duration::from_secs(1), held.lost()).await;
    assert_eq!(
        lost,
        Ok(LeaseState::Lost),
        "not lost within 1 s of the delete"
    );
    let next = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .expect("the waiter did not get the lock within 1 s")
        .unwrap()
        .unwrap();
    assert!(next.fencing_token() > held.fencing_token());
    assert_eq!(
        kept.state(),
        LeaseState::Held,
        "another lease of the session was lost"
    );
    next.release().await.unwrap();
    kept.release().await.unwrap();
}

/// `zkCli.sh delete` of a waiting node: its waiter sees its own node go
/// (it watches it while it waits) and joins the queue again, behind the
/// waiter that was after it. When the holder releases, only that one gets
/// the lock — the waiter whose node was deleted must not take its
/// predecessor's deletion for its turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_waiting_node_joins_the_queue_again_and_nobody_holds_twice() {
    let Some(setup) = setup().await else {
        return;
    };
    let namespace = namespace();
    let client = || {
        backend(
            &setup.url,
            &namespace,
            Duration::from_secs(10),
            Duration::from_secs(2),
        )
    };
    let mine = client().await;
    let (locks, other, third) = (
        Locker::new(mine.clone()),
        Locker::new(client().await),
        Locker::new(client().await),
    );
    let name = "del:waiting";
    let parent = mine.lock_path(name).unwrap();
    let wait = || Acquire::ttl(TTL).wait(Duration::from_secs(20));
    let held = locks.acquire(name, Acquire::ttl(TTL)).await.unwrap();
    let mut second = tokio::spawn({
        let other = other.clone();
        async move { other.acquire(name, wait()).await }
    });
    wait_for_nodes(&setup.servers, &parent, 2).await;
    let third_waits = tokio::spawn({
        let third = third.clone();
        async move { third.acquire(name, wait()).await }
    });
    let nodes = wait_for_nodes(&setup.servers, &parent, 3).await;

    zkcli(&setup.servers, &["delete", &nodes[1]]).await;
    // The second waiter's new node, behind the third's.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = lock_nodes(&setup.servers, &parent).await;
        if now.len() == 3 && !now.contains(&nodes[1]) {
            assert_eq!(
                now[..2],
                [nodes[0].clone(), nodes[2].clone()],
                "the queue before the new node changed"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{parent} has {now:?}");
        // No event tells the test of another client's create: a short poll.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !third_waits.is_finished() && !second.is_finished(),
        "a waiter got the lock while it was held"
    );
    held.release().await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(2), third_waits)
        .await
        .expect("the third client did not get the lock when it was released")
        .unwrap()
        .unwrap();
    let doubled = tokio::time::timeout(Duration::from_millis(300), &mut second).await;
    assert!(
        doubled.is_err(),
        "the waiter whose node was deleted got the lock while another held it"
    );
    let third_token = next.fencing_token();
    next.release().await.unwrap();
    let last = tokio::time::timeout(Duration::from_secs(2), second)
        .await
        .expect("the second client did not get the lock after the third released")
        .unwrap()
        .unwrap();
    assert!(last.fencing_token() > third_token);
    last.release().await.unwrap();
}

/// The leader killed while three backends acquire (with deadlines, as
/// tries, cancelled midway) and release in a loop: the requests in flight
/// on the connections that break fail before an answer, and each is sent
/// again or undone — never two holders of a name, and once every attempt
/// has ended no lock node stays, so every name is free. (A release whose
/// connection broke must not leave its node behind, nor must an acquire
/// dropped while its create was in flight.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_node_stays_after_a_leader_kill_mid_traffic() {
    const NAMES: usize = 3;
    const TASKS: usize = 8;
    let Some(setup) = setup().await else {
        return;
    };
    let namespace = namespace();
    let mut backends = Vec::new();
    for _ in 0..3 {
        backends.push(
            backend(
                &setup.url,
                &namespace,
                Duration::from_secs(10),
                Duration::from_secs(5),
            )
            .await,
        );
    }
    let holders: Arc<Vec<AtomicUsize>> =
        Arc::new((0..NAMES).map(|_| AtomicUsize::new(0)).collect());
    let stop = Instant::now() + Duration::from_secs(16);
    let mut tasks = Vec::new();
    for (b, backend) in backends.iter().enumerate() {
        for t in 0..TASKS {
            let (backend, holders) = (backend.clone(), Arc::clone(&holders));
            let mut turn = b * TASKS + t;
            tasks.push(tokio::spawn(async move {
                while Instant::now() < stop {
                    turn += 1;
                    let i = turn % NAMES;
                    let name = LockName::new(&format!("kill:{i}")).unwrap();
                    let owner = OwnerToken::generate().unwrap();
                    let wait = match turn % 3 {
                        0 => Wait::No,
                        _ => Wait::Until(Instant::now() + Duration::from_millis(300)),
                    };
                    let request = AcquireRequest {
                        name: name.clone(),
                        owner,
                        ttl: TTL,
                        wait,
                    };
                    // Every fourth is dropped midway, some while its
                    // create is in flight.
                    let cancel_after = Duration::from_micros((turn as u64 * 7919) % 40_000);
                    let granted = if turn.is_multiple_of(4) {
                        match tokio::time::timeout(cancel_after, backend.acquire(request)).await {
                            Ok(granted) => granted,
                            Err(_) => continue,
                        }
                    } else {
                        backend.acquire(request).await
                    };
                    let Ok(grant) = granted else { continue };
                    assert_eq!(
                        holders[i].fetch_add(1, Ordering::SeqCst),
                        0,
                        "two holders of kill:{i}"
                    );
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    holders[i].fetch_sub(1, Ordering::SeqCst);
                    let claim = Claim {
                        name,
                        owner,
                        token: grant.token,
                        handle: grant.handle,
                    };
                    // Its answer may be an error (the connection broke);
                    // its node must go all the same.
                    let _ = backend.release(&claim).await;
                }
            }));
        }
    }
    // The traffic is the point: 5 s of it before the kill, 4 s while the
    // ensemble elects and the sessions move, the rest after.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let killed = setup.services.kill(&leader(&setup.servers).await);
    tokio::time::sleep(Duration::from_secs(4)).await;
    tokio::task::spawn_blocking(move || killed.restore())
        .await
        .unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    let parents: Vec<String> = (0..NAMES)
        .map(|i| backends[0].lock_path(&format!("kill:{i}")).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut left = Vec::new();
        for parent in &parents {
            left.extend(lock_nodes(&setup.servers, parent).await);
        }
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lock nodes stayed after every attempt ended: {left:?}"
        );
        // No event tells the test of a delete in the background: a short poll.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `parent` has `count` lock nodes (a waiter's create has
/// landed), and returns them in sequence order.
async fn wait_for_nodes(servers: &[String], parent: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let nodes = lock_nodes(servers, parent).await;
        if nodes.len() >= count {
            return nodes;
        }
        assert!(Instant::now() < deadline, "{parent} has {nodes:?}");
        // The test has no event for another client's create: a short poll.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A create whose answer is lost: the server created the node, and the
/// connection broke before the answer came. lockkit finds its node by its
/// GUID (Curator's protection mode) instead of creating a second one: the
/// queue holds exactly one node of the acquire, and the grant is that node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_answer_lost_mid_acquire_leaves_exactly_one_node() {
    let Some(setup) = setup().await else {
        return;
    };
    let cutter = ReplyCutter::start(&setup.servers[0]).await;
    let namespace = namespace();
    let through = backend(
        &format!("zk://{}", cutter.address),
        &namespace,
        Duration::from_secs(10),
        Duration::from_secs(5),
    )
    .await;
    let direct = backend(
        &setup.url,
        &namespace,
        Duration::from_secs(10),
        Duration::from_secs(2),
    )
    .await;
    let (locks, other) = (Locker::new(through.clone()), Locker::new(direct));
    // Someone holds the name, so its parent exists and the create lands.
    let holder = other
        .acquire("lost:reply", Acquire::ttl(TTL))
        .await
        .unwrap();
    let parent = through.lock_path("lost:reply").unwrap();

    cutter.arm();
    let waiting = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .acquire(
                    "lost:reply",
                    Acquire::ttl(TTL).wait(Duration::from_secs(20)),
                )
                .await
        }
    });
    let nodes = wait_for_nodes(&setup.servers, &parent, 2).await;
    tokio::time::timeout(Duration::from_secs(10), cutter.cut())
        .await
        .expect("the create's answer was never cut");
    // The acquire has found its node again and waits behind the holder.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the waiter got a held lock");
    assert_eq!(
        lock_nodes(&setup.servers, &parent).await,
        nodes,
        "the lost answer left a second node"
    );

    holder.release().await.unwrap();
    let lease = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiter did not get the lock")
        .unwrap()
        .unwrap();
    let left = lock_nodes(&setup.servers, &parent).await;
    assert_eq!(left, nodes[1..], "one node of the acquire, and it is held");
    let client = Client::connect(&setup.servers.join(",")).await.unwrap();
    let stat = client.check_stat(&left[0]).await.unwrap().unwrap();
    assert_eq!(
        lease.fencing_token().get(),
        u64::try_from(stat.czxid).unwrap()
    );
    lease.release().await.unwrap();
}

/// A TCP proxy in front of one ZooKeeper server that, once armed, cuts the
/// connection instead of delivering the answer to the next create: the
/// server has acted, the client never hears of it.
struct ReplyCutter {
    address: String,
    armed: Arc<AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
    was_cut: Arc<AtomicBool>,
}

/// ZooKeeper's op codes of the creates (`create`, `create2`).
const CREATES: [i32; 2] = [1, 15];

impl ReplyCutter {
    async fn start(server: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cutter = Self {
            address: listener.local_addr().unwrap().to_string(),
            armed: Arc::new(AtomicBool::new(false)),
            cut: Arc::new(tokio::sync::Notify::new()),
            was_cut: Arc::new(AtomicBool::new(false)),
        };
        let (server, armed, cut, was_cut) = (
            server.to_owned(),
            Arc::clone(&cutter.armed),
            Arc::clone(&cutter.cut),
            Arc::clone(&cutter.was_cut),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = TcpStream::connect(&server).await else {
                    continue;
                };
                let (armed, cut, was_cut) =
                    (Arc::clone(&armed), Arc::clone(&cut), Arc::clone(&was_cut));
                tokio::spawn(async move {
                    relay(client, upstream, armed, &was_cut).await;
                    cut.notify_waiters();
                });
            }
        });
        cutter
    }

    /// The next create's answer is cut.
    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Resolves once a create's answer was cut.
    async fn cut(&self) {
        loop {
            let notified = self.cut.notified();
            if self.was_cut.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// Relays one connection, frame by frame (a 4-byte length, then the body;
/// the first frame each way is the session's connect), until either side
/// closes — or until the answer to an armed create comes, which is dropped
/// with the connection.
async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    armed: Arc<AtomicBool>,
    was_cut: &AtomicBool,
) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = upstream.into_split();
    let doomed: StdMutex<Option<i32>> = StdMutex::new(None);
    let up = async {
        let mut first = true;
        while let Some(frame) = read_frame(&mut from_client).await {
            if !first && frame.len() >= 8 && armed.load(Ordering::SeqCst) {
                let xid = i32::from_be_bytes(frame[0..4].try_into().unwrap());
                let op = i32::from_be_bytes(frame[4..8].try_into().unwrap());
                if CREATES.contains(&op) {
                    armed.store(false, Ordering::SeqCst);
                    *doomed.lock().unwrap() = Some(xid);
                }
            }
            first = false;
            if write_frame(&mut to_server, &frame).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let mut first = true;
        while let Some(frame) = read_frame(&mut from_server).await {
            if !first && frame.len() >= 4 {
                let xid = i32::from_be_bytes(frame[0..4].try_into().unwrap());
                if *doomed.lock().unwrap() == Some(xid) {
                    was_cut.store(true, Ordering::SeqCst);
                    return;
                }
            }
            first = false;
            if write_frame(&mut to_client, &frame).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

async fn read_frame(from: &mut tokio::net::tcp::OwnedReadHalf) -> Option<Vec<u8>> {
    let mut length = [0; 4];
    from.read_exact(&mut length).await.ok()?;
    let mut frame = vec![0; usize::try_from(u32::from_be_bytes(length)).ok()?];
    from.read_exact(&mut frame).await.ok()?;
    Some(frame)
}

async fn write_frame(
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    frame: &[u8],
) -> std::io::Result<()> {
    let length = u32::try_from(frame.len()).unwrap_or(u32::MAX).to_be_bytes();
    to.write_all(&length).await?;
    to.write_all(frame).await
}
