//! The uncontended acquire without a script (`SET NX PX` and `INCRBY` of
//! the fence, pipelined) keeps the queue's order: the fence's parity tells
//! it when waiters queue, and a grant ahead of them is given back.

use std::time::Duration;

use lockkit_core::{Acquire, ErrorKind, Locker};
use lockkit_redis::keys::LockKeys;
use lockkit_redis::{RedisBackend, RedisOptions};
use lockkit_testkit::{server_from_env, unique_namespace};

mod common;
use common::wait_until_queued;

const TTL: Duration = Duration::from_secs(30);

async fn locker(url: &str, namespace: &str) -> Locker {
    let options = RedisOptions::new().namespace(namespace);
    Locker::new(RedisBackend::connect(url, options).await.unwrap())
}

async fn admin(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

async fn fence(connection: &mut redis::aio::MultiplexedConnection, keys: &LockKeys) -> i64 {
    redis::cmd("GET")
        .arg(keys.fence())
        .query_async::<Option<i64>>(connection)
        .await
        .unwrap()
        .unwrap_or(0)
}

/// A holder's key vanishes while a waiter queues (its TTL ran out: a
/// crashed holder). A newcomer then finds the lock free, but it does not go
/// ahead of the waiter: its grant is given back, the waiter is handed the
/// lock, and the newcomer is told the lock is contended. The fence is odd
/// while the waiter queues and even again once the queue is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_does_not_go_ahead_of_waiters_queued_behind_an_expired_holder() {
    let Some(url) = server_from_env("LOCKKIT_TEST_REDIS_URL") else {
        return;
    };
    let namespace = unique_namespace();
    let name = "fast:queued";
    let keys = LockKeys::new(&namespace, name);
    let mut admin = admin(&url).await;
    let (holder, waiter, newcomer) = (
        locker(&url, &namespace).await,
        locker(&url, &namespace).await,
        locker(&url, &namespace).await,
    );
    let held = holder.acquire(name, Acquire::ttl(TTL)).await.unwrap();
    assert_eq!(
        fence(&mut admin, &keys).await % 2,
        0,
        "no queue: even fence"
    );
    let waiting = tokio::spawn({
        let waiter = waiter.clone();
        async move {
            waiter
                .acquire(name, Acquire::ttl(TTL).wait(Duration::from_secs(20)))
                .await
        }
    });
    wait_until_queued(&url, &namespace, name).await;
    assert_eq!(fence(&mut admin, &keys).await % 2, 1, "a queue: odd fence");

    // As at the holder's TTL, long before the waiter checks again.
    redis::cmd("DEL")
        .arg(keys.lock())
        .query_async::<i64>(&mut admin)
        .await
        .unwrap();
    let refused = newcomer.try_acquire(name, Acquire::ttl(TTL)).await.unwrap();
    assert!(
        refused.is_none(),
        "the newcomer went ahead of the queued waiter"
    );
    let handed = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiter was never handed the lock")
        .unwrap()
        .unwrap();
    assert!(handed.fencing_token() > held.fencing_token());
    assert_eq!(
        fence(&mut admin, &keys).await % 2,
        0,
        "the queue is gone: even fence"
    );
    let handed_token = handed.fencing_token();
    handed.release().await.unwrap();
    let stale = held.release().await.unwrap_err();
    assert_eq!(stale.kind(), ErrorKind::NotHeld, "{stale}");

    let next = newcomer
        .try_acquire(name, Acquire::ttl(TTL))
        .await
        .unwrap()
        .expect("a free lock with no queue is granted");
    assert!(next.fencing_token() > handed_token);
    next.release().await.unwrap();
}

/// A queue whose waiters are all gone (their places expired, as when every
/// waiter crashed) does not keep a free lock from a newcomer, and the fence
/// turns even again so later acquires need no script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_of_expired_places_does_not_keep_a_free_lock_from_a_newcomer() {
    let Some(url) = server_from_env("LOCKKIT_TEST_REDIS_URL") else {
        return;
    };
    let namespace = unique_namespace();
    let name = "fast:stale";
    let keys = LockKeys::new(&namespace, name);
    let mut admin = admin(&url).await;
    // One waiter whose place expired long ago, and the odd fence it left.
    redis::pipe()
        .cmd("ZADD")
        .arg(keys.queue())
        .arg(1)
        .arg("0123456789abcdef0123456789abcdef")
        .cmd("HSET")
        .arg(keys.waiters())
        .arg("0123456789abcdef0123456789abcdef")
        .arg("1 30000 nobody")
        .cmd("SET")
        .arg(keys.fence())
        .arg(41)
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let locks = locker(&url, &namespace).await;
    let lease = locks
        .try_acquire(name, Acquire::ttl(TTL))
        .await
        .unwrap()
        .expect("a queue of expired places kept the free lock from the newcomer");
    assert!(lease.fencing_token().get() > 41);
    assert_eq!(fence(&mut admin, &keys).await % 2, 0);
    lease.release().await.unwrap();
    let again = locks
        .try_acquire(name, Acquire::ttl(TTL))
        .await
        .unwrap()
        .expect("the lock is free");
    assert_eq!(fence(&mut admin, &keys).await % 2, 0);
    again.release().await.unwrap();
}
