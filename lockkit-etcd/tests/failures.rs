//! Failure behaviour against the three-member etcd cluster of
//! `scripts/services`: the leader killed, every member stopped and started
//! again, every member paused, the session lease revoked and a lock key
//! deleted by an operator. These tests stop the shared cluster, so they
//! live in this binary alone and take turns.

use std::time::{Duration, Instant};

use lockkit_core::{Acquire, ErrorKind, LeaseState, Locker};
use lockkit_etcd::EtcdBackend;
use lockkit_testkit::{
    a_short_pause_leaves_the_lock_uncertain, acquire_when_back, held_within, restore_all, Fault,
    Services,
};
use tokio::sync::Mutex;

mod common;
use common::{backend, cluster, etcdctl, leader, namespace};

/// One fault at a time: they share the cluster.
static TURN: Mutex<()> = Mutex::const_new(());

/// The acquire TTL: not a bound on this backend.
const TTL: Duration = Duration::from_secs(30);

const MEMBERS: [&str; 3] = ["etcd-1", "etcd-2", "etcd-3"];

struct Setup {
    url: String,
    members: Vec<String>,
    services: Services,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

async fn setup() -> Option<Setup> {
    let (url, members) = cluster()?;
    let services = Services::from_env()?;
    Some(Setup {
        url,
        members,
        services,
        _turn: TURN.lock().await,
    })
}

/// Two clients of the cluster under one fresh namespace, each with a
/// session lease of `session_ttl` seconds: the backends and their lockers.
struct Pair {
    mine: EtcdBackend,
    locks: Locker,
    theirs: EtcdBackend,
    other: Locker,
}

async fn two_clients(url: &str, session_ttl: u64, response_timeout: Duration) -> Pair {
    let namespace = namespace();
    let mine = backend(url, &namespace, session_ttl, response_timeout).await;
    let theirs = backend(url, &namespace, session_ttl, response_timeout).await;
    Pair {
        locks: Locker::new(mine.clone()),
        other: Locker::new(theirs.clone()),
        mine,
        theirs,
    }
}

/// The leader is killed: after the election, acquires and keep-alives go
/// on, the lease held across it is Held again (it may be Uncertain for a
/// moment) and no one else got its lock meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_keeps_every_lock_and_the_session() {
    let Some(setup) = setup().await else {
        return;
    };
    let Pair {
        mine, locks, other, ..
    } = two_clients(&setup.url, 4, Duration::from_secs(2)).await;
    let held = locks
        .acquire("leader:held", Acquire::ttl(TTL))
        .await
        .unwrap();
    let session = mine.session_lease();

    let leader = leader(&setup.members).await;
    let index: usize = leader.trim_start_matches("etcd-").parse().unwrap();
    assert_eq!(
        mine.pinned_member(),
        Some(format!("http://{}", setup.members[index - 1])),
        "requests do not go to the leader"
    );
    let killed = setup.services.kill(&leader);
    let after = acquire_when_back(
        &locks,
        "leader:after",
        Acquire::ttl(TTL),
        Duration::from_secs(20),
    )
    .await;
    assert!(after.fencing_token() > held.fencing_token());
    assert_eq!(mine.pinned_member(), None, "still pinned to a dead leader");
    after.release().await.unwrap();
    // Two session TTLs after the kill: only keep-alives answered by the
    // new leader keep the lease.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        held.state(),
        LeaseState::Held,
        "the lease did not survive the election"
    );
    assert_eq!(
        mine.session_lease(),
        session,
        "the session lease was replaced"
    );
    let blocked = other
        .try_acquire("leader:held", Acquire::ttl(TTL))
        .await
        .unwrap();
    assert!(blocked.is_none(), "two holders after the election");
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

/// Every member stopped: an acquire fails `Unavailable` within its
/// response timeout; the lease is Uncertain, then Lost at its session's
/// bound and not before. Started again, the backend recovers by itself with
/// a new session lease, and its tokens are higher than before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_cluster_loses_leases_at_the_bound_and_the_backend_recovers() {
    let Some(setup) = setup().await else {
        return;
    };
    let namespace = namespace();
    let backend = backend(&setup.url, &namespace, 4, Duration::from_secs(1)).await;
    let locks = Locker::new(backend.clone());
    let held = locks
        .acquire("stopped:held", Acquire::ttl(TTL))
        .await
        .unwrap();
    let session = backend.session_lease();
    let view = held.view();

    let faults: Vec<Fault> = MEMBERS
        .iter()
        .map(|member| setup.services.stop(member))
        .collect();
    let started = Instant::now();
    let refused = locks.try_acquire("stopped:other", Acquire::ttl(TTL)).await;
    let took = started.elapsed();
    match refused {
        Err(error) => assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}"),
        Ok(lease) => panic!("granted with every member stopped: {lease:?}"),
    }
    assert!(took < Duration::from_secs(3), "Unavailable took {took:?}");

    let uncertain = tokio::time::timeout(Duration::from_secs(6), view.not_held())
        .await
        .expect("the lease stayed Held with every member stopped");
    let bound = held
        .valid_until()
        .expect("an etcd lease has its session's bound");
    if uncertain == LeaseState::Uncertain {
        tokio::time::timeout(Duration::from_secs(6), view.lost())
            .await
            .expect("the lease outlived its session's bound");
    }
    assert!(
        Instant::now() >= bound,
        "the lease was lost before its session's bound"
    );
    assert_eq!(held.state(), LeaseState::Lost);

    restore_all(faults).await;
    let token = held.fencing_token();
    let after = acquire_when_back(
        &locks,
        "stopped:after",
        Acquire::ttl(TTL),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        after.fencing_token() > token,
        "a token no higher than before the restart"
    );
    assert_ne!(
        backend.session_lease(),
        session,
        "the ended session lease is still used"
    );
    // Uncertain until the delete watch is open again, then Held.
    held_within(&after, Duration::from_secs(5)).await;
    after.release().await.unwrap();
}

/// Every member paused past a keep-alive, then resumed before the session's
/// bound: the lease is Uncertain meanwhile, and Held again after — never
/// Lost — with the lock still its.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_cluster_makes_the_lease_uncertain_until_it_answers() {
    let Some(setup) = setup().await else {
        return;
    };
    let Pair { locks, other, .. } = two_clients(&setup.url, 9, Duration::from_secs(1)).await;
    a_short_pause_leaves_the_lock_uncertain(
        &setup.services,
        &MEMBERS,
        &locks,
        &other,
        "paused:held",
    )
    .await;
}

/// `etcdctl lease revoke` of the session lease: every lease on it is Lost
/// within a second, and the next acquire gets a new session lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_lease_loses_every_lease_at_once() {
    let Some(setup) = setup().await else {
        return;
    };
    let namespace = namespace();
    let backend = backend(&setup.url, &namespace, 10, Duration::from_secs(2)).await;
    let locks = Locker::new(backend.clone());
    let first = locks.acquire("revoke:1", Acquire::ttl(TTL)).await.unwrap();
    let second = locks.acquire("revoke:2", Acquire::ttl(TTL)).await.unwrap();
    let session = backend.session_lease().expect("a live session");

    etcdctl(
        &setup.members,
        &["lease", "revoke", &format!("{session:x}")],
    )
    .await;
    for lease in [&first, &second] {
        let lost = tokio::time::timeout(Duration::from_secs(1), lease.lost()).await;
        assert_eq!(
            lost,
            Ok(LeaseState::Lost),
            "not lost within 1 s of the revoke"
        );
    }
    let again = locks.acquire("revoke:1", Acquire::ttl(TTL)).await.unwrap();
    assert_ne!(backend.session_lease(), Some(session));
    assert!(again.fencing_token() > first.fencing_token());
    again.release().await.unwrap();
}

/// `etcdctl del` of a held lock key: that lease is Lost within a second,
/// the others of its session are not, and the next waiter gets the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_loses_its_lease_and_the_next_waiter_gets_the_lock() {
    let Some(setup) = setup().await else {
        return;
    };
    let Pair {
        mine, locks, other, ..
    } = two_clients(&setup.url, 10, Duration::from_secs(2)).await;
    let held = locks.acquire("del:held", Acquire::ttl(TTL)).await.unwrap();
    let kept = locks.acquire("del:kept", Acquire::ttl(TTL)).await.unwrap();
    let waiting = tokio::spawn({
        let other = other.clone();
        async move {
            other
                .acquire("del:held", Acquire::ttl(TTL).wait(Duration::from_secs(10)))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the waiter got a held lock");

    let key = mine.key_of("del:held").unwrap();
    etcdctl(&setup.members, &["del", &key]).await;
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

/// `etcdctl del` of a *waiting* key: the waiter notices, queues again with
/// a new key, and gets the lock when its holder releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_waiting_key_queues_again() {
    let Some(setup) = setup().await else {
        return;
    };
    let Pair {
        locks,
        theirs,
        other,
        ..
    } = two_clients(&setup.url, 10, Duration::from_secs(2)).await;
    let held = locks.acquire("requeue", Acquire::ttl(TTL)).await.unwrap();
    let waiting = tokio::spawn({
        let other = other.clone();
        async move {
            other
                .acquire("requeue", Acquire::ttl(TTL).wait(Duration::from_secs(20)))
                .await
        }
    });
    let key = theirs.key_of("requeue").unwrap();
    let first = created(&setup.members, &key, None).await;
    etcdctl(&setup.members, &["del", &key]).await;
    // The waiter puts its key again, at a later revision.
    let again = created(&setup.members, &key, Some(first)).await;
    assert!(again > first);
    assert!(!waiting.is_finished(), "the waiter got a held lock");
    let token = held.fencing_token();
    held.release().await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("the requeued waiter did not get the released lock")
        .unwrap()
        .unwrap();
    assert!(next.fencing_token() > token);
    next.release().await.unwrap();
}

/// The create revision of `key` once it exists, other than `not`; within 5 s.
async fn created(members: &[String], key: &str, not: Option<i64>) -> i64 {
    use lockkit_etcd::etcd_client::{Client, EventType, WatchOptions};
    let endpoints: Vec<String> = members
        .iter()
        .map(|member| format!("http://{member}"))
        .collect();
    let client = Client::connect(endpoints, None).await.unwrap();
    let read = client.kv_client().get(key, None).await.unwrap();
    if let Some(revision) = read.kvs().first().map(|kv| kv.create_revision()) {
        if Some(revision) != not {
            return revision;
        }
    }
    // Not there yet: every put after the read comes on a watch.
    let after = read.header().map_or(0, |header| header.revision()) + 1;
    let mut watch = client
        .watch_client()
        .watch(key, Some(WatchOptions::new().with_start_revision(after)))
        .await
        .unwrap();
    let put = async {
        while let Some(answer) = watch.message().await.unwrap() {
            for event in answer.events() {
                let revision = event.kv().map(|kv| kv.create_revision());
                if event.event_type() == EventType::Put && revision != not {
                    return revision;
                }
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(5), put)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("{key} was not put within 5 s"))
}

/// A release that fails because no member answers does not leave the key
/// behind while the session lives: it is deleted once the members answer,
/// and the waiter gets the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_during_an_outage_still_frees_the_lock_after_it() {
    let Some(setup) = setup().await else {
        return;
    };
    let Pair {
        mine, locks, other, ..
    } = two_clients(&setup.url, 30, Duration::from_secs(1)).await;
    let held = locks
        .acquire("outage:release", Acquire::ttl(TTL))
        .await
        .unwrap();
    let key = mine.key_of("outage:release").unwrap();

    // Stopped, not paused: a paused member still takes a request into its
    // socket and carries it out when it resumes.
    let faults: Vec<Fault> = MEMBERS
        .iter()
        .map(|member| setup.services.stop(member))
        .collect();
    let released = held.release().await;
    assert!(
        released.is_err(),
        "a release with every member stopped succeeded"
    );
    restore_all(faults).await;
    // Deleted in the background once the members answer; the session lives.
    let next = other
        .acquire(
            "outage:release",
            Acquire::ttl(TTL).wait(Duration::from_secs(10)),
        )
        .await
        .expect("the key of a failed release stayed in the queue");
    assert_eq!(
        mine.session_lease()
            .map(|lease| key.ends_with(&format!("{lease:x}"))),
        Some(true)
    );
    next.release().await.unwrap();
}

/// Only the leader paused — hung, its connection open — with the default
/// timeouts: the backend leaves it for the other members, which elect a
/// new leader; the lease held across it is never Lost, acquires go on, and
/// nobody else gets the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_leader_is_left_for_the_other_members() {
    let Some(setup) = setup().await else {
        return;
    };
    let Pair {
        mine, locks, other, ..
    } = two_clients(&setup.url, 10, Duration::from_secs(5)).await;
    let held = locks.acquire("hung:held", Acquire::ttl(TTL)).await.unwrap();
    let view = held.view();
    let leader = leader(&setup.members).await;
    let paused = setup.services.pause(&leader);
    // Past one session TTL: keep-alives answered by the new leader alone
    // keep the lease.
    let after = tokio::time::timeout(
        Duration::from_secs(12),
        locks.acquire(
            "hung:after",
            Acquire::ttl(TTL).wait(Duration::from_secs(10)),
        ),
    )
    .await
    .expect("an acquire hung with the leader")
    .expect("an acquire failed with only the leader hung");
    after.release().await.unwrap();
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_ne!(
        view.state(),
        LeaseState::Lost,
        "lost with only the leader hung"
    );
    held_within(&held, Duration::from_secs(5)).await;
    assert_eq!(mine.pinned_member(), None, "still pinned to a hung leader");
    let blocked = other
        .try_acquire("hung:held", Acquire::ttl(TTL))
        .await
        .unwrap();
    assert!(blocked.is_none(), "two holders with the leader hung");
    paused.restore();
    held.release().await.unwrap();
}

/// A member listed in the URL that is down does not fail a connect: the
/// session lease and the watch go to the members that answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_leaves_a_listed_member_that_is_down() {
    let Some(setup) = setup().await else {
        return;
    };
    // Port 1: nothing listens there, first in the list.
    let url = setup.url.replacen("etcd://", "etcd://127.0.0.1:1,", 1);
    for _ in 0..6 {
        let backend = lockkit_etcd::EtcdBackend::connect_with(
            &url,
            lockkit_etcd::EtcdOptions::new()
                .namespace(namespace())
                .response_timeout(Duration::from_secs(2)),
        )
        .await
        .expect("connect with one listed member down");
        let locks = Locker::new(backend);
        locks
            .try_acquire("down-member", Acquire::ttl(TTL))
            .await
            .unwrap()
            .expect("a free lock")
            .release()
            .await
            .unwrap();
        locks.close().await.unwrap();
    }
}
