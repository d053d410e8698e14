//! Failure behaviour against the real servers of `scripts/services`: a
//! stopped or paused Redis, a restart, and a replica that stops
//! acknowledging. These tests stop shared servers, so they live in this
//! binary alone and take turns.

use std::time::{Duration, Instant};

use lockkit_core::{Acquire, ErrorKind, LeaseState, Locker};
use lockkit_testkit::{acquire_when_back, server_from_env, unique_namespace, Services};
mod common;
use common::{wait_until_queued, OwnUser};
use lockkit_redis::{RedisBackend, RedisOptions};
use tokio::sync::Mutex;

/// One fault at a time: they share servers.
static TURN: Mutex<()> = Mutex::const_new(());

/// The server named by `var` and the fault injector, or `None` (skip, or
/// panic under LOCKKIT_TEST_REQUIRE=1); the guard is this test's turn.
async fn fault_setup(
    var: &str,
) -> Option<(String, Services, tokio::sync::MutexGuard<'static, ()>)> {
    let server = server_from_env(var)?;
    let services = Services::from_env()?;
    Some((server, services, TURN.lock().await))
}

async fn locker(url: &str, options: RedisOptions) -> Locker {
    Locker::new(RedisBackend::connect(url, options).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_fails_fast_turns_leases_uncertain_and_restart_reconnects() {
    let Some((url, services, _turn)) = fault_setup("LOCKKIT_TEST_REDIS_URL").await else {
        return;
    };
    // A long reply timeout: a stopped server must fail by refusal, not by timing out.
    let response_timeout = Duration::from_secs(10);
    let namespace = unique_namespace();
    let options = RedisOptions::new()
        .namespace(&namespace)
        .response_timeout(response_timeout);
    let locks = locker(&url, options).await;
    let ttl = Duration::from_secs(3);
    let lease = locks
        .acquire("failures:held", Acquire::ttl(ttl).auto_renew())
        .await
        .unwrap();

    let outage = services.stop("redis");
    let started = Instant::now();
    let error = locks
        .try_acquire("failures:other", Acquire::ttl(ttl))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.is_retryable());
    assert!(error.to_string().contains("127.0.0.1:6379"), "{error}");
    assert!(
        took < response_timeout / 4,
        "a stopped server took {took:?} to report"
    );
    // Renewal (every second) fails against the stopped server: the lease
    // says so before its validity ends.
    let state = tokio::time::timeout(ttl, lease.not_held())
        .await
        .expect("not_held did not resolve while renewals failed");
    assert_eq!(state, LeaseState::Uncertain);
    assert!(lease.remaining().is_some_and(|left| !left.is_zero()));

    outage.restore();
    // The same backend reconnects by itself; its first commands may still
    // see the old connection fail.
    let again = acquire_when_back(
        &locks,
        "failures:after-restart",
        Acquire::ttl(ttl),
        Duration::from_secs(10),
    )
    .await;
    again.release().await.unwrap();
    drop(lease);

    // Waiting works again too: a waiter on the restarted server gets the
    // lock when it is released, long before the holder's TTL.
    let other = locker(&url, RedisOptions::new().namespace(&namespace)).await;
    let held = other
        .acquire("failures:handover", Acquire::ttl(Duration::from_secs(60)))
        .await
        .unwrap();
    let waiter = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .acquire(
                    "failures:handover",
                    Acquire::ttl(ttl).wait(Duration::from_secs(20)),
                )
                .await
        }
    });
    wait_until_queued(&url, &namespace, "failures:handover").await;
    held.release().await.unwrap();
    let handed = waiter
        .await
        .unwrap()
        .expect("the waiter gets the released lock");
    handed.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_server_is_unavailable_after_the_reply_timeout_not_a_hang() {
    let Some((url, services, _turn)) = fault_setup("LOCKKIT_TEST_REDIS_URL").await else {
        return;
    };
    let response_timeout = Duration::from_millis(300);
    let options = RedisOptions::new()
        .namespace(unique_namespace())
        .response_timeout(response_timeout);
    let locks = locker(&url, options).await;
    let pause = services.pause("redis");
    let started = Instant::now();
    let error = tokio::time::timeout(
        Duration::from_secs(10),
        locks.acquire("failures:paused", Acquire::ttl(Duration::from_secs(1))),
    )
    .await
    .expect("acquire against a paused server hung")
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.message().contains("no reply in time"), "{error}");
    assert!(started.elapsed() >= response_timeout);
    pause.restore();
}

/// A grant answered only after its TTL ran out is never reported held:
/// the uncontended acquire's `INCRBY` might have run after a later grant's
/// (see `scripts::fast_acquire`). It is given back and the acquire goes on,
/// so the lease returned is held, with a token above the one skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_answered_after_its_ttl_is_given_back_not_reported_held() {
    let Some((url, services, _turn)) = fault_setup("LOCKKIT_TEST_REDIS_URL").await else {
        return;
    };
    let namespace = unique_namespace();
    let options = RedisOptions::new()
        .namespace(&namespace)
        .response_timeout(Duration::from_secs(10));
    let locks = locker(&url, options).await;
    let name = "failures:late";
    let first = locks
        .acquire(name, Acquire::ttl(Duration::from_secs(10)))
        .await
        .unwrap();
    let before = first.fencing_token();
    first.release().await.unwrap();

    let ttl = Duration::from_millis(300);
    let pause = services.pause("redis");
    let acquiring = tokio::spawn({
        let locks = locks.clone();
        async move { locks.acquire(name, Acquire::ttl(ttl)).await }
    });
    tokio::time::sleep(ttl * 2).await;
    pause.restore();
    let lease = acquiring.await.unwrap().unwrap();
    assert_eq!(
        lease.state(),
        LeaseState::Held,
        "a grant answered after its TTL was reported"
    );
    assert!(lease
        .valid_until()
        .is_some_and(|until| until > Instant::now()));
    // The late grant took one token, the grant reported another.
    assert!(lease.fencing_token().get() >= before.get() + 4, "{lease:?}");
    lease.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_replicas_refuses_a_grant_the_paused_replica_did_not_acknowledge() {
    let Some((pair, services, _turn)) = fault_setup("LOCKKIT_TEST_REDIS_FAILOVER").await else {
        return;
    };
    let primary = pair.split(',').next().unwrap().to_owned();
    let namespace = unique_namespace();
    let replicated = locker(
        &primary,
        RedisOptions::new()
            .namespace(&namespace)
            .min_replicas(1)
            .replica_timeout(Duration::from_millis(100)),
    )
    .await;
    let plain = locker(&primary, RedisOptions::new().namespace(&namespace)).await;
    let ttl = Duration::from_secs(5);

    let lease = replicated
        .acquire("failover:job", Acquire::ttl(ttl))
        .await
        .expect("the replica acknowledges while it runs");
    lease.extend(ttl).await.unwrap();
    lease.release().await.unwrap();

    let pause = services.pause("redis-replica");
    let error = replicated
        .acquire("failover:job", Acquire::ttl(ttl))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(
        error
            .message()
            .contains("only 0 of the required 1 replicas"),
        "{error}"
    );
    // The refused grant was given back, not left to expire.
    let free = plain
        .try_acquire("failover:job", Acquire::ttl(ttl))
        .await
        .unwrap()
        .expect("a refused grant still holds the lock");
    free.release().await.unwrap();
    pause.restore();

    let lease = replicated
        .acquire("failover:job", Acquire::ttl(ttl))
        .await
        .expect("grants resume once the replica acknowledges again");
    lease.release().await.unwrap();
}

/// A server-wide setting changed for one test; restored when dropped,
/// also when the test panics.
struct ServerSetting {
    client: redis::Client,
    name: &'static str,
    before: String,
}

impl ServerSetting {
    fn set(url: &str, name: &'static str, value: &str) -> Self {
        let client = redis::Client::open(url).unwrap();
        let mut connection = client.get_connection().unwrap();
        let (_, before): (String, String) = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query(&mut connection)
            .unwrap();
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .exec(&mut connection)
            .unwrap();
        Self {
            client,
            name,
            before,
        }
    }
}

impl Drop for ServerSetting {
    fn drop(&mut self) {
        if let Ok(mut connection) = self.client.get_connection() {
            let _ = redis::cmd("CONFIG")
                .arg("SET")
                .arg(self.name)
                .arg(&self.before)
                .exec(&mut connection);
        }
    }
}

/// A `maxmemory-policy` that may evict a held lock's key is refused at
/// connect, naming the setting and the safe value, unless the user accepts
/// the risk with `allow_eviction`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_maxmemory_policy_is_refused_at_connect() {
    let Some((url, _services, _turn)) = fault_setup("LOCKKIT_TEST_REDIS_URL").await else {
        return;
    };
    for policy in ["allkeys-lru", "volatile-lru", "volatile-ttl"] {
        let _setting = ServerSetting::set(&url, "maxmemory-policy", policy);
        let options = RedisOptions::new().namespace(unique_namespace());
        let error = RedisBackend::connect(&url, options.clone())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        let message = error.message();
        assert!(message.contains("maxmemory-policy"), "{message}");
        assert!(message.contains(policy), "{message}");
        assert!(message.contains("noeviction"), "{message}");
        assert!(message.contains("allow_eviction"), "{message}");
        RedisBackend::connect(&url, options.allow_eviction(true))
            .await
            .expect("allow_eviction accepts the risk");
    }
}

/// A replica is refused at connect, naming its primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_is_refused_at_connect_naming_its_primary() {
    let Some((pair, _services, _turn)) = fault_setup("LOCKKIT_TEST_REDIS_FAILOVER").await else {
        return;
    };
    let (primary, replica) = pair.split_once(',').expect("primary,replica");
    let options = RedisOptions::new().namespace(unique_namespace());
    let error = RedisBackend::connect(replica, options.clone())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    let port = primary.rsplit(':').next().unwrap();
    assert!(error.message().contains("replica"), "{error}");
    assert!(error.message().contains(port), "{error}");
    // A user who may not run INFO (`-@dangerous`, a common hardening) is
    // refused too: the first write of connect's rights check says so.
    let hardened = OwnUser::with_rules(replica, &["~*", "&*", "+@all", "-@dangerous"]);
    let error = RedisBackend::connect(&hardened.url, options.clone())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.message().contains("replica"), "{error}");
    RedisBackend::connect(primary, options)
        .await
        .expect("the primary is accepted");
}

/// A node of a Redis Cluster is refused at connect, naming cluster mode:
/// it would refuse the keys of every slot it does not serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_is_refused_at_connect() {
    let Some(url) = server_from_env("LOCKKIT_TEST_REDIS_CLUSTER") else {
        return;
    };
    let options = RedisOptions::new().namespace(unique_namespace());
    let error = RedisBackend::connect(&url, options).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.message().contains("cluster"), "{error}");
}
