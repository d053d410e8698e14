//! What the Redis backend does when its own connections end: dropped under
//! a held lease (a network blip, a load balancer's idle timeout), or closed
//! by `close`. Each test connects as an ACL user of its own, so `CLIENT KILL
//! USER` and `CLIENT LIST` see exactly that client's connections, and other
//! tests on the same server are untouched.

use std::time::{Duration, Instant};

use lockkit_core::{Acquire, ErrorKind, LeaseState, Locker};
use lockkit_redis::{RedisBackend, RedisOptions};
use lockkit_testkit::{server_from_env, unique_namespace};

mod common;
use common::{wait_until_queued, OwnUser};

const TTL: Duration = Duration::from_secs(30);

/// Asserts `name` is free now, as `what` left it.
async fn assert_free(locks: &Locker, name: &str, what: &str) {
    locks
        .try_acquire(name, Acquire::ttl(TTL))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{what} did not free `{name}`"))
        .release()
        .await
        .unwrap();
}

async fn locker(url: &str, namespace: &str) -> Locker {
    let options = RedisOptions::new().namespace(namespace);
    Locker::new(RedisBackend::connect(url, options).await.unwrap())
}

/// A release right after the client's connections dropped is repeated on
/// the reconnected connection and frees the lock — through `release`, a
/// dropped lease and the end of `with_lock` — instead of leaving it held
/// for its whole TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_after_dropped_connections_is_repeated_and_frees_the_lock() {
    let Some(url) = server_from_env("LOCKKIT_TEST_REDIS_URL") else {
        return;
    };
    let user = OwnUser::create(&url);
    let namespace = unique_namespace();
    let (mine, other) = (
        locker(&user.url, &namespace).await,
        locker(&url, &namespace).await,
    );
    let wait = Acquire::ttl(TTL).wait(Duration::from_secs(5));

    let lease = mine.acquire("released", Acquire::ttl(TTL)).await.unwrap();
    assert!(user.drop_connections() >= 1);
    let started = Instant::now();
    lease
        .release()
        .await
        .expect("release after a dropped connection");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_free(&other, "released", "the release").await;

    let lease = mine.acquire("dropped", Acquire::ttl(TTL)).await.unwrap();
    assert!(user.drop_connections() >= 1);
    drop(lease);
    other
        .acquire("dropped", wait)
        .await
        .expect("the background release of a dropped lease freed the lock")
        .release()
        .await
        .unwrap();

    let outcome = mine
        .with_lock("with-lock", Acquire::ttl(TTL), |_lease| async {
            user.drop_connections()
        })
        .await
        .unwrap();
    assert!(outcome >= 1);
    assert_free(&other, "with-lock", "with_lock's release").await;

    // Extend is owner-checked too: repeated, and the lease stays held.
    let lease = mine.acquire("extended", Acquire::ttl(TTL)).await.unwrap();
    assert!(user.drop_connections() >= 1);
    lease
        .extend(TTL)
        .await
        .expect("extend after a dropped connection");
    assert_eq!(lease.state(), LeaseState::Held);
    lease.release().await.unwrap();
}

/// `close` ends a waiting acquire, releases what the client held, and
/// leaves the user with no connection open at the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_releases_and_closes_every_connection() {
    let Some(url) = server_from_env("LOCKKIT_TEST_REDIS_URL") else {
        return;
    };
    let user = OwnUser::create(&url);
    let namespace = unique_namespace();
    let (mine, other) = (
        locker(&user.url, &namespace).await,
        locker(&url, &namespace).await,
    );
    let busy = other.acquire("busy", Acquire::ttl(TTL)).await.unwrap();
    let held = mine
        .acquire("held", Acquire::ttl(TTL).auto_renew())
        .await
        .unwrap();
    let waiting = tokio::spawn({
        let mine = mine.clone();
        async move { mine.acquire("busy", Acquire::ttl(TTL)).await }
    });
    // Commands and hand-overs: two connections, both opened at connect.
    assert_eq!(user.connections(), 2);
    wait_until_queued(&url, &namespace, "busy").await;

    mine.close().await.unwrap();
    let error = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("a waiting acquire outlived close")
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(!error.is_retryable());
    assert_eq!(held.state(), LeaseState::Lost);
    assert_free(&other, "held", "close").await;
    // The server notices closed sockets on its own time: poll its view.
    let deadline = Instant::now() + Duration::from_secs(5);
    while user.connections() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} connections still open after close",
            user.connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    busy.release().await.unwrap();
}

/// A user who may not do all that lockkit does — Redis 7's default of no
/// channels, a least-privilege ACL without `TIME` (which only a queued
/// waiter's script runs), a missing command, keys outside the namespace,
/// read-only keys, no `EVALSHA` — is refused at connect, naming what is
/// missing, instead of failing its first contended acquire with the lock
/// held. A user with exactly the rights the error suggests works, waiting
/// included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_the_rights_lockkit_needs_is_refused_at_connect() {
    let Some(url) = server_from_env("LOCKKIT_TEST_REDIS_URL") else {
        return;
    };
    let namespace = unique_namespace();
    let (keys, channels) = (format!("~{namespace}:*"), format!("&{namespace}:grants:*"));
    let least = [
        keys.as_str(),
        channels.as_str(),
        "+@read",
        "+@write",
        "+@scripting",
        "+@pubsub",
        "+@connection",
    ];
    let cases: [&[&str]; 7] = [
        &["~*", "+@all"],
        &["~*", "+@all", "-subscribe", channels.as_str()],
        &["~*", "+@all", "-publish", channels.as_str()],
        &least,
        &["~*", "&*", "+@all", "-zadd"],
        &["~other:*", "&*", "+@all"],
        &["%R~*", "&*", "+@all"],
    ];
    for rules in cases
        .iter()
        .chain([&["~*", "&*", "+@all", "-evalsha", "-eval"][..]].iter())
    {
        let user = OwnUser::with_rules(&url, rules);
        let options = RedisOptions::new().namespace(&namespace);
        let error = RedisBackend::connect(&user.url, options.clone())
            .await
            .expect_err(&format!("a user with {rules:?} was let through"));
        assert_eq!(error.kind(), ErrorKind::Config, "{rules:?}: {error}");
        let message = error.message();
        assert!(
            message.contains(&format!("{namespace}:grants:*")),
            "{message}"
        );
        let grant = message
            .rsplit('`')
            .nth(1)
            .expect("a suggested rule in backticks");
        assert!(
            grant.starts_with(&format!("ACL SETUSER {} ", user.name)),
            "{message}"
        );
        user.reset_to(grant.split_whitespace().skip(3));
        let locks = Locker::new(
            RedisBackend::connect(&user.url, options)
                .await
                .unwrap_or_else(|error| panic!("{rules:?} after `{grant}`: {error}")),
        );
        contended_acquire_works(&locks, &url, &namespace).await;
    }
}

/// A waiter is handed the lock another client releases.
async fn contended_acquire_works(mine: &Locker, url: &str, namespace: &str) {
    let other = locker(url, namespace).await;
    let held = other.acquire("contended", Acquire::ttl(TTL)).await.unwrap();
    let waiting = tokio::spawn({
        let mine = mine.clone();
        async move { mine.acquire("contended", Acquire::ttl(TTL)).await }
    });
    wait_until_queued(url, namespace, "contended").await;
    held.release().await.unwrap();
    let lease = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiter was never handed the lock")
        .unwrap()
        .expect("a user with the suggested rights may wait");
    lease.release().await.unwrap();
}
