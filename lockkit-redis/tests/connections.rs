//! What the Redis backend does when its own connections end: dropped under
//! a held lease (a network blip, a load balancer's idle timeout), or closed
//! by `close`. Each test connects as an ACL user of its own, so `CLIENT KILL
//! USER` and `CLIENT LIST` see exactly that client's connections, and other
//! tests on the same server are untouched.

use std::time::{Duration, Instant};

use lockkit_core::conformance::{server_from_env, unique_namespace};
use lockkit_core::{Acquire, ErrorKind, LeaseState, Locker, OwnerToken};
use lockkit_redis::{RedisBackend, RedisOptions};

const TTL: Duration = Duration::from_secs(30);

/// An ACL user made for one test; deleted when dropped, also on panic.
struct OwnUser {
    admin: redis::Client,
    name: String,
    /// The server URL with this user's credentials.
    url: String,
}

impl OwnUser {
    fn create(url: &str) -> Self {
        let admin = redis::Client::open(url).unwrap();
        let hex = OwnerToken::generate().unwrap().to_hex();
        let name = format!("lockkit-test-{}", &hex[..12]);
        let password = &hex[12..];
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&name)
            .arg("on")
            .arg(format!(">{password}"))
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .exec(&mut admin.get_connection().unwrap())
            .unwrap();
        let host = url.strip_prefix("redis://").expect("a redis:// test URL");
        let url = format!("redis://{name}:{password}@{host}");
        Self { admin, name, url }
    }

    /// Drops every connection of this user, as a network failure would.
    fn drop_connections(&self) -> usize {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("USER")
            .arg(&self.name)
            .query(&mut self.admin.get_connection().unwrap())
            .unwrap()
    }

    /// How many connections this user has open now.
    fn connections(&self) -> usize {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut self.admin.get_connection().unwrap())
            .unwrap();
        let field = format!(" user={} ", self.name);
        list.lines().filter(|line| line.contains(&field)).count()
    }
}

impl Drop for OwnUser {
    fn drop(&mut self) {
        if let Ok(mut connection) = self.admin.get_connection() {
            let _ = redis::cmd("ACL")
                .arg("DELUSER")
                .arg(&self.name)
                .exec(&mut connection);
        }
    }
}

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
    // The waiter subscribes before it queues: two connections once it waits.
    let deadline = Instant::now() + Duration::from_secs(5);
    while user.connections() < 2 {
        assert!(Instant::now() < deadline, "the waiter never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

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
