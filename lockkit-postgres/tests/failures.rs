//! Failure behaviour against the real PostgreSQL of `scripts/services`: a
//! terminated session, a server restart, a full lock table, and bad
//! credentials or addresses. These tests stop or fill the shared server, so
//! they live in this binary alone and take turns.

use std::time::{Duration, Instant};

use lockkit_core::{Acquire, ErrorKind, LeaseState, Locker};
use lockkit_postgres::{PostgresBackend, PostgresOptions};
use lockkit_testkit::{acquire_when_back, server_from_env, unique_namespace, Services};
use tokio::sync::Mutex;
use tokio_postgres::Client;

mod common;
use common::{backend, raw, two_backends, wait_until_free, wait_until_queued, OwnRole};

/// One fault at a time: they share the server.
static TURN: Mutex<()> = Mutex::const_new(());

const TTL: Duration = Duration::from_secs(30);

/// The server's URL and this test's turn, or `None` (skip, or panic under
/// LOCKKIT_TEST_REQUIRE=1).
async fn setup() -> Option<(String, tokio::sync::MutexGuard<'static, ()>)> {
    let url = server_from_env("LOCKKIT_TEST_POSTGRES_URL")?;
    Some((url, TURN.lock().await))
}

/// Terminates the session holding advisory `key`; returns its pid.
async fn terminate_holder(admin: &Client, key: i64) -> i32 {
    let (classid, objid) = common::lock_columns(key);
    let row = admin
        .query_one(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_locks \
             WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND objsubid = 1 AND granted",
            &[&classid, &objid],
        )
        .await
        .expect("exactly one session holds the key");
    assert!(row.get::<_, bool>(1), "pg_terminate_backend refused");
    row.get(0)
}

async fn lost_within(lease: &lockkit_core::LeaseView, bound: Duration) {
    let state = tokio::time::timeout(bound, lease.lost())
        .await
        .expect("the lease did not turn Lost after its session died");
    assert_eq!(state, LeaseState::Lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_session_loses_its_leases_and_another_client_acquires() {
    let Some((url, _turn)) = setup().await else {
        return;
    };
    let (mine, theirs) = two_backends(&url).await;
    let (locks, other) = (Locker::new(mine.clone()), Locker::new(theirs));
    let admin = raw(&url).await;

    // One lease on a shared session, one on the waiter connection that
    // waited for it.
    let shared = locks
        .acquire("failures:shared", Acquire::ttl(TTL))
        .await
        .unwrap();
    let blocker = other
        .acquire("failures:waited", Acquire::ttl(TTL))
        .await
        .unwrap();
    let waiting = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .acquire(
                    "failures:waited",
                    Acquire::ttl(TTL).wait(Duration::from_secs(10)),
                )
                .await
        }
    });
    wait_until_queued(&admin, mine.key_of("failures:waited").unwrap()).await;
    blocker.release().await.unwrap();
    let waited = waiting.await.unwrap().expect("the waiter gets the lock");

    let killed = terminate_holder(&admin, mine.key_of("failures:shared").unwrap()).await;
    lost_within(&shared, Duration::from_secs(2)).await;
    wait_until_free(&admin, mine.key_of("failures:shared").unwrap()).await;
    assert_eq!(
        waited.state(),
        LeaseState::Held,
        "a lease on another connection was lost with pid {killed}"
    );
    let taken = other
        .try_acquire("failures:shared", Acquire::ttl(TTL))
        .await
        .unwrap()
        .expect("the terminated session's lock is free");
    assert!(taken.fencing_token() > shared.fencing_token());
    let error = shared.release().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotHeld, "{error}");
    taken.release().await.unwrap();

    terminate_holder(&admin, mine.key_of("failures:waited").unwrap()).await;
    lost_within(&waited, Duration::from_secs(2)).await;
    wait_until_free(&admin, mine.key_of("failures:waited").unwrap()).await;
    other
        .try_acquire("failures:waited", Acquire::ttl(TTL))
        .await
        .unwrap()
        .expect("the terminated waiter's lock is free")
        .release()
        .await
        .unwrap();

    // The same client reconnects for its next acquire.
    let again = locks
        .try_acquire("failures:shared", Acquire::ttl(TTL))
        .await
        .unwrap()
        .expect("the client reconnects and acquires");
    again.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_loses_leases_then_reconnects_with_higher_tokens() {
    let Some((url, _turn)) = setup().await else {
        return;
    };
    let Some(services) = Services::from_env() else {
        return;
    };
    let namespace = unique_namespace();
    let locks = Locker::new(backend(&url, &namespace).await);
    let lease = locks
        .acquire("failures:restart", Acquire::ttl(TTL))
        .await
        .unwrap();
    let before = lease.fencing_token();

    let outage = services.stop("postgres");
    lost_within(&lease, Duration::from_secs(2)).await;
    let started = Instant::now();
    let error = locks
        .try_acquire("failures:during", Acquire::ttl(TTL))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("127.0.0.1:5432"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a stopped server took {:?} to report",
        started.elapsed()
    );

    outage.restore();
    // The server may still be starting up; nothing announces it.
    let again = acquire_when_back(
        &locks,
        "failures:restart",
        Acquire::ttl(TTL),
        Duration::from_secs(20),
    )
    .await;
    assert!(
        again.fencing_token() > before,
        "token {} after the restart is not above {before}",
        again.fencing_token()
    );
    assert!(lease.release().await.is_err());
    again.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_lock_table_is_unavailable_naming_the_setting() {
    let Some((url, _turn)) = setup().await else {
        return;
    };
    let namespace = unique_namespace();
    let locks = Locker::new(backend(&url, &namespace).await);
    // Fill the server's lock table from outside: session locks taken before
    // the statement fails stay held until this connection closes.
    let filler = raw(&url).await;
    let filled = filler
        .query_one(
            "SELECT count(pg_advisory_lock(k)) FROM generate_series(7000000000, 7010000000) AS k",
            &[],
        )
        .await
        .expect_err("ten million locks fit in the lock table");
    assert_eq!(
        filled.code().map(|code| code.code()),
        Some("53200"),
        "{filled}"
    );

    let started = Instant::now();
    let error = locks
        .try_acquire("failures:no-room", Acquire::ttl(TTL))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(
        error.message().contains("max_locks_per_transaction"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not a quick refusal"
    );

    drop(filler);
    // The filler's session may take a moment to end.
    acquire_when_back(
        &locks,
        "failures:no-room",
        Acquire::ttl(TTL),
        Duration::from_secs(10),
    )
    .await
    .release()
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_config_and_an_unreachable_server_is_unavailable() {
    let Some((url, _turn)) = setup().await else {
        return;
    };
    let options = || PostgresOptions::new().schema("lockkit_auth");
    let password_url = "postgres://lockkit_auth:wrong@127.0.0.1:5432/lockkit";
    let error = PostgresBackend::connect_with(password_url, options())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.message().contains("password"), "{error}");
    assert!(
        !error.to_string().contains("wrong"),
        "the password leaked: {error}"
    );

    let right = "postgres://lockkit_auth:lockkit-auth-secret@127.0.0.1:5432/lockkit";
    let backend = PostgresBackend::connect_with(right, options())
        .await
        .expect("the right password connects");
    let locks = Locker::new(backend);
    locks
        .try_acquire("failures:auth", Acquire::ttl(TTL))
        .await
        .unwrap()
        .expect("free")
        .release()
        .await
        .unwrap();

    let database = url.rsplit_once('/').unwrap().0.to_owned() + "/no_such_database";
    let error = PostgresBackend::connect(&database).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.message().contains("no_such_database"), "{error}");

    let started = Instant::now();
    let error = PostgresBackend::connect("postgres://postgres@127.0.0.1:1/lockkit")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.message().contains("127.0.0.1:1"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));

    let error = PostgresBackend::connect("postgres://[::1:5432/x")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.message().contains("url"), "{error}");
}

/// The server process serving the session that holds advisory `key`.
async fn holder_pid(admin: &Client, key: i64) -> i32 {
    let (classid, objid) = common::lock_columns(key);
    admin
        .query_one(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' \
             AND classid = $1 AND objid = $2 AND objsubid = 1 AND granted",
            &[&classid, &objid],
        )
        .await
        .expect("exactly one session holds the key")
        .get(0)
}

/// A server process stopped by SIGSTOP: its connection stays open and
/// nothing it was sent runs. Continued when dropped, also on panic.
struct Stopped(i32);

impl Stopped {
    fn process(pid: i32) -> Self {
        signal(pid, "-STOP");
        Self(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

fn signal(pid: i32, which: &str) {
    let status = std::process::Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {which} {pid}: {status}");
}

/// The double grant seen by replaying other libraries' bug reports: one
/// client (`sessions = 1`) has a try in flight on its shared session while
/// its own waiting acquire of the same name is granted on a waiter
/// connection and released. The try then gets the lock; the client must
/// know it holds it, so a second try is refused rather than stacked on the
/// same session, and one release frees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_try_in_flight_during_a_waited_grant_is_recorded_and_never_stacked() {
    let Some((url, _turn)) = setup().await else {
        return;
    };
    let namespace = unique_namespace();
    let options = PostgresOptions::new().namespace(&namespace).sessions(1);
    let mine = PostgresBackend::connect_with(&url, options).await.unwrap();
    let (locks, other) = (
        Locker::new(mine.clone()),
        Locker::new(backend(&url, &namespace).await),
    );
    let admin = raw(&url).await;
    let key = mine.key_of("stacked").unwrap();

    // The shared session's server process, found by a lock it holds.
    let marker = locks.acquire("marker", Acquire::ttl(TTL)).await.unwrap();
    let shared_pid = holder_pid(&admin, mine.key_of("marker").unwrap()).await;

    let blocker = other.acquire("stacked", Acquire::ttl(TTL)).await.unwrap();
    let waiting = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .acquire("stacked", Acquire::ttl(TTL).wait(Duration::from_secs(10)))
                .await
        }
    });
    wait_until_queued(&admin, key).await;

    let stopped = Stopped::process(shared_pid);
    let trying = tokio::spawn({
        let locks = locks.clone();
        async move { locks.try_acquire("stacked", Acquire::ttl(TTL)).await }
    });
    // The try is sent to a stopped process: nothing at the server shows it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !trying.is_finished(),
        "the try did not wait for its session"
    );
    blocker.release().await.unwrap();
    let waited = waiting.await.unwrap().expect("the waiter gets the lock");
    waited.release().await.unwrap();
    drop(stopped);

    let tried = trying
        .await
        .unwrap()
        .unwrap()
        .expect("the lock was free when the try ran");
    assert!(
        locks
            .try_acquire("stacked", Acquire::ttl(TTL))
            .await
            .unwrap()
            .is_none(),
        "the same client granted `stacked` twice"
    );
    assert!(tried.is_held());
    tried.release().await.expect("the try's lease releases");
    other
        .try_acquire("stacked", Acquire::ttl(TTL))
        .await
        .unwrap()
        .expect("one release per grant frees the lock")
        .release()
        .await
        .unwrap();
    marker.release().await.unwrap();
}

/// A server that stops answering (a paused process, a silent network)
/// costs a release at most `response_timeout`: the session is taken for
/// gone, its leases turn Lost, and the next acquire reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_statement_ends_its_session_within_the_response_timeout() {
    let Some((url, _turn)) = setup().await else {
        return;
    };
    let response_timeout = Duration::from_secs(1);
    let options = PostgresOptions::new()
        .namespace(unique_namespace())
        .sessions(1)
        .response_timeout(response_timeout);
    let mine = PostgresBackend::connect_with(&url, options).await.unwrap();
    let locks = Locker::new(mine.clone());
    let admin = raw(&url).await;
    let lease = locks.acquire("silent", Acquire::ttl(TTL)).await.unwrap();
    let pid = holder_pid(&admin, mine.key_of("silent").unwrap()).await;

    let stopped = Stopped::process(pid);
    let started = Instant::now();
    let error = lease.release().await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(error.kind(), ErrorKind::NotHeld, "{error}");
    assert!(
        took < response_timeout * 3,
        "a release to a silent server took {took:?}"
    );
    // The next acquire does not wait for the silent session.
    let started = Instant::now();
    let again = locks
        .try_acquire("other", Acquire::ttl(TTL))
        .await
        .unwrap()
        .expect("a new session takes a free lock");
    assert!(
        started.elapsed() < response_timeout,
        "{:?}",
        started.elapsed()
    );
    again.release().await.unwrap();
    drop(stopped);
}

/// A role with `synchronous_commit = off` (which would let a crash lose the
/// last advances of the fencing sequence): after the server crashes — a
/// backend killed, so it restarts from its write-ahead log — no fencing
/// token handed out before is handed out again, by session locks or by
/// locked transactions (committed, as the user's would be).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_never_hands_out_a_fencing_token_again() {
    let Some((url, _turn)) = setup().await else {
        return;
    };
    let role = OwnRole::create(&url, &[("synchronous_commit", "off")]).await;
    for transactions in [false, true] {
        // One session, so the lease below turns Lost when the crash ends it.
        let options = PostgresOptions::new()
            .namespace(unique_namespace())
            .sessions(1);
        let backend = PostgresBackend::connect_with(&role.url, options)
            .await
            .unwrap();
        let locks = Locker::new(backend.clone());
        let victim = raw(&url).await;
        let pid: i32 = victim
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let mut highest = 0;
        for round in 0..3000 {
            let name = format!("crash-{round}");
            let token = if transactions {
                let transaction = backend.try_transaction(&name).await.unwrap();
                let transaction = transaction.expect("nobody else holds it");
                let token = transaction.fencing_token();
                transaction.commit().await.unwrap();
                token
            } else {
                let lease = locks.try_acquire(&name, Acquire::ttl(TTL)).await.unwrap();
                let lease = lease.expect("nobody else holds it");
                let token = lease.fencing_token();
                lease.release().await.unwrap();
                token
            };
            highest = highest.max(token.get());
        }
        let sentinel = locks
            .acquire("crash-sentinel", Acquire::ttl(TTL))
            .await
            .unwrap();
        signal(pid, "-KILL");
        // The server ends every session, then replays its log before it
        // accepts connections again.
        lost_within(&sentinel.view(), Duration::from_secs(10)).await;
        let again = acquire_when_back(
            &locks,
            "crash-after",
            Acquire::ttl(TTL),
            Duration::from_secs(60),
        )
        .await;
        assert!(
            again.fencing_token().get() > highest,
            "token {} after the crash repeats one handed out before (up to {highest}; \
             transactions: {transactions})",
            again.fencing_token()
        );
        again.release().await.unwrap();
    }
}
