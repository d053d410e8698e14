//! What the PostgreSQL backend promises beyond the shared contract, checked
//! at the server: locks multiplexed on few connections, no stacking, and
//! the lock-in-a-transaction form.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lockkit_core::{
    Acquire, AcquireRequest, Claim, ErrorKind, LockBackend, LockName, Locker, OwnerToken, Wait,
};
use lockkit_postgres::{PostgresBackend, PostgresOptions};
use lockkit_testkit::{resident_kib, server_from_env, try_acquire_all, unique_namespace};
use tokio_postgres::Client;

mod common;
use common::{backend, raw, two_backends, wait_until_queued};

const TTL: Duration = Duration::from_secs(30);

/// How many of `keys` are granted at the server, and to how many sessions.
async fn held_at_server(admin: &Client, keys: &[i64]) -> (i64, i64) {
    let row = admin
        .query_one(
            "SELECT count(*), count(DISTINCT pid) FROM pg_locks \
             WHERE locktype = 'advisory' AND objsubid = 1 AND granted \
             AND ((classid::bigint << 32) | objid::bigint) = ANY($1)",
            &[&keys],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Every shared session connects in `connect`, so none adds a connection's
/// setup to some later acquire.
#[tokio::test]
async fn connect_opens_every_shared_session() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    for sessions in [1, 3] {
        let options = PostgresOptions::new()
            .namespace(unique_namespace())
            .sessions(sessions);
        let backend = PostgresBackend::connect_with(&url, options).await.unwrap();
        assert_eq!(backend.connections(), sessions);
        Locker::new(backend).close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_locks_are_held_on_the_shared_sessions_alone() {
    const LOCKS: usize = 10_000;
    const TASKS: usize = 64;
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let namespace = unique_namespace();
    let backend = backend(&url, &namespace).await;
    let locks = Locker::new(backend.clone());
    let names: Arc<Vec<String>> = Arc::new((0..LOCKS).map(|i| format!("scale:{i}")).collect());
    let memory_before = resident_kib();
    let leases = try_acquire_all(&locks, Arc::clone(&names), TASKS, Acquire::ttl(TTL)).await;
    assert_eq!(leases.len(), LOCKS);

    let keys: Vec<i64> = names
        .iter()
        .map(|name| backend.key_of(name).unwrap())
        .collect();
    let admin = raw(&url).await;
    let (granted, sessions) = held_at_server(&admin, &keys).await;
    assert_eq!(
        granted, LOCKS as i64,
        "not every lock is held at the server"
    );
    assert!(sessions <= 2, "{LOCKS} locks took {sessions} sessions");
    assert!(
        backend.connections() <= 2,
        "{} connections",
        backend.connections()
    );
    if let (Some(before), Some(after)) = (memory_before, resident_kib()) {
        // Reported, not asserted: the allocator decides what RSS shows.
        eprintln!(
            "{LOCKS} locks held on {sessions} sessions; client resident memory \
             {before} KiB -> {after} KiB (+{} KiB)",
            after.saturating_sub(before)
        );
    }

    let mut tasks = tokio::task::JoinSet::new();
    let mut leases = leases;
    while !leases.is_empty() {
        let chunk: Vec<_> = leases
            .drain(..leases.len().min(LOCKS / TASKS + 1))
            .collect();
        tasks.spawn(async move {
            for lease in chunk {
                lease.release().await.unwrap();
            }
        });
    }
    tasks.join_all().await;
    assert_eq!(
        held_at_server(&admin, &keys).await.0,
        0,
        "a release left a lock held"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_this_client_holds_never_stacks() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let namespace = unique_namespace();
    // One shared session: a second try would reach the session that holds
    // the key, where PostgreSQL would stack it.
    let options = PostgresOptions::new().namespace(&namespace).sessions(1);
    let backend = PostgresBackend::connect_with(&url, options).await.unwrap();
    let (locks, other) = (
        Locker::new(backend.clone()),
        Locker::new(self::backend(&url, &namespace).await),
    );
    let first = locks.acquire("stack", Acquire::ttl(TTL)).await.unwrap();
    assert!(
        locks
            .try_acquire("stack", Acquire::ttl(TTL))
            .await
            .unwrap()
            .is_none(),
        "a second try by the same client was granted"
    );
    // A second acquire by the same client waits, like anyone else's.
    let second = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .acquire("stack", Acquire::ttl(TTL).wait(Duration::from_secs(10)))
                .await
        }
    });
    let admin = raw(&url).await;
    wait_until_queued(&admin, backend.key_of("stack").unwrap()).await;
    assert!(!second.is_finished(), "the second acquire did not wait");
    first.release().await.unwrap();
    let second = second.await.unwrap().unwrap();
    second.release().await.unwrap();
    // Had either stacked, one release would have left the lock held.
    assert_eq!(
        held_at_server(&admin, &[backend.key_of("stack").unwrap()])
            .await
            .0,
        0
    );
    other
        .try_acquire("stack", Acquire::ttl(TTL))
        .await
        .unwrap()
        .expect("the lock is free after one release per acquire")
        .release()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_keys_meet_plain_sql_advisory_locks() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let locks = Locker::new(backend(&url, &unique_namespace()).await);
    let key = 4_242_000_000_000 + i64::from(std::process::id());
    let sql = raw(&url).await;
    let taken: bool = sql
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .unwrap()
        .get(0);
    assert!(taken);
    let name = format!("#{key}");
    assert!(locks
        .try_acquire(&name, Acquire::ttl(TTL))
        .await
        .unwrap()
        .is_none());
    sql.execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
    let lease = locks
        .try_acquire(&name, Acquire::ttl(TTL))
        .await
        .unwrap()
        .unwrap();
    let blocked: bool = sql
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .unwrap()
        .get(0);
    assert!(!blocked, "plain SQL took the key lockkit holds");
    lease.release().await.unwrap();
}

/// A locked transaction refuses a name exactly as every acquire does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_transaction_validates_its_name_as_every_acquire() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let backend = backend(&url, &unique_namespace()).await;
    let locks = Locker::new(backend.clone());
    let long = "n".repeat(lockkit_core::MAX_NAME_BYTES + 1);
    for name in ["", "bell\u{7}", long.as_str()] {
        let acquire = locks
            .try_acquire(name, Acquire::ttl(TTL))
            .await
            .unwrap_err();
        let transaction = backend.try_transaction(name).await.unwrap_err();
        assert_eq!(transaction.kind(), ErrorKind::InvalidInput, "{transaction}");
        assert_eq!(transaction.to_string(), acquire.to_string());
        let waited = backend
            .transaction(name, Duration::from_millis(10))
            .await
            .unwrap_err();
        assert_eq!(waited.to_string(), acquire.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_transaction_commits_lock_and_writes_together() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let namespace = unique_namespace();
    let (mine, theirs) = (
        backend(&url, &namespace).await,
        backend(&url, &namespace).await,
    );
    let other = Locker::new(theirs.clone());
    let table = format!("lockkit_test_{}", &namespace[namespace.len() - 12..]);
    let admin = raw(&url).await;
    admin
        .batch_execute(&format!("CREATE TABLE {table} (token bigint)"))
        .await
        .unwrap();

    let before = other.acquire("tx", Acquire::ttl(TTL)).await.unwrap();
    let before_token = before.fencing_token();
    before.release().await.unwrap();

    let transaction = mine
        .transaction("tx", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(transaction.fencing_token() > before_token);
    let token = i64::try_from(transaction.fencing_token().get()).unwrap();
    transaction
        .client()
        .execute(&format!("INSERT INTO {table} VALUES ($1)"), &[&token])
        .await
        .unwrap();
    assert!(
        other
            .try_acquire("tx", Acquire::ttl(TTL))
            .await
            .unwrap()
            .is_none(),
        "a session lock was granted during the transaction"
    );
    assert!(theirs.try_transaction("tx").await.unwrap().is_none());
    let visible: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(visible, 0, "an uncommitted write is visible");
    transaction.commit().await.unwrap();
    let visible: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(visible, 1);
    let after = other
        .try_acquire("tx", Acquire::ttl(TTL))
        .await
        .unwrap()
        .expect("the commit released the lock");
    assert!(after.fencing_token().get() > token as u64);
    after.release().await.unwrap();

    // Rolled back or dropped: no write, and the lock is free again.
    let transaction = mine
        .transaction("tx", Duration::from_secs(1))
        .await
        .unwrap();
    transaction
        .client()
        .execute(&format!("INSERT INTO {table} VALUES (0)"), &[])
        .await
        .unwrap();
    transaction.rollback().await.unwrap();
    let transaction = mine
        .try_transaction("tx")
        .await
        .unwrap()
        .expect("free after rollback");
    transaction
        .client()
        .execute(&format!("INSERT INTO {table} VALUES (0)"), &[])
        .await
        .unwrap();
    drop(transaction);
    // The drop rolls back in the background: wait in the server's queue
    // for the lock it frees.
    let lease = other
        .acquire("tx", Acquire::ttl(TTL).wait(Duration::from_secs(2)))
        .await
        .expect("a dropped transaction kept its lock");
    let visible: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(visible, 1, "a rolled-back or dropped write was kept");

    // Held by a session lock: the transaction waits for it, or times out.
    let started = Instant::now();
    let error = mine
        .transaction("tx", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(1),
        "timed out after {waited:?}"
    );
    let waiting = tokio::spawn({
        let mine = mine.clone();
        async move { mine.transaction("tx", Duration::from_secs(10)).await }
    });
    wait_until_queued(&admin, mine.key_of("tx").unwrap()).await;
    lease.release().await.unwrap();
    let transaction = waiting
        .await
        .unwrap()
        .expect("the release lets the transaction in");
    transaction.commit().await.unwrap();
    admin
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

/// A backend with one waiter connection (`max_waiters = 1`), a locker over
/// it, another client of the same namespace, and an admin connection.
async fn one_waiter(url: &str) -> (PostgresBackend, Locker, Locker, Client) {
    let namespace = unique_namespace();
    let options = PostgresOptions::new().namespace(&namespace).max_waiters(1);
    let mine = PostgresBackend::connect_with(url, options).await.unwrap();
    let other = Locker::new(backend(url, &namespace).await);
    (mine.clone(), Locker::new(mine), other, raw(url).await)
}

/// Runs `acquire` while `other` holds `name`, releasing it once the
/// acquire is queued at the server for `key`: the lock is granted after
/// waiting, on a waiter connection.
async fn after_waiting<T: Send + 'static>(
    other: &Locker,
    admin: &Client,
    key: i64,
    name: &str,
    acquire: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let blocker = other.acquire(name, Acquire::ttl(TTL)).await.unwrap();
    let waiting = tokio::spawn(acquire);
    wait_until_queued(admin, key).await;
    blocker.release().await.unwrap();
    waiting.await.unwrap()
}

/// A lock granted after waiting, on `locks`' waiter connection: `other`
/// holds `name` until `locks` is queued for it.
async fn granted_after_waiting(
    locks: &Locker,
    other: &Locker,
    admin: &Client,
    key: i64,
    name: &str,
) -> lockkit_core::Lease {
    let (locks, owned) = (locks.clone(), name.to_owned());
    let acquire = async move {
        locks
            .acquire(&owned, Acquire::ttl(TTL).wait(Duration::from_secs(10)))
            .await
    };
    after_waiting(other, admin, key, name, acquire)
        .await
        .expect("the waiter gets the lock")
}

/// The server process holding advisory lock `key`.
async fn holder_pid(admin: &Client, key: i64) -> i32 {
    admin
        .query_one(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND granted \
             AND ((classid::bigint << 32) | objid::bigint) = $1",
            &[&key],
        )
        .await
        .unwrap()
        .get(0)
}

/// The waiter connection a lock was granted on goes back to the queue
/// however the grant ends — released, dropped, or lost with its connection
/// and then released — so with `max_waiters = 1` every next wait gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_connection_comes_back_however_its_grant_ends() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let (mine, locks, other, admin) = one_waiter(&url).await;
    let key = mine.key_of("waited").unwrap();
    for round in 0..2 {
        let released = granted_after_waiting(&locks, &other, &admin, key, "waited").await;
        let waiter = holder_pid(&admin, key).await;
        released.release().await.unwrap();

        let dropped = granted_after_waiting(&locks, &other, &admin, key, "waited").await;
        assert_eq!(
            holder_pid(&admin, key).await,
            waiter,
            "round {round}: a released lock's waiter connection was not reused"
        );
        drop(dropped);
        // Dropped: released in the background; the next wait gets the same
        // waiter connection again.
        let lost = granted_after_waiting(&locks, &other, &admin, key, "waited").await;
        assert_eq!(
            holder_pid(&admin, key).await,
            waiter,
            "round {round}: a dropped lock's waiter connection was not reused"
        );
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks \
                 WHERE locktype = 'advisory' AND objsubid = 1 AND granted \
                 AND ((classid::bigint << 32) | objid::bigint) = $1",
                &[&key],
            )
            .await
            .unwrap();
        let state = tokio::time::timeout(Duration::from_secs(10), lost.lost())
            .await
            .expect("the lease outlived its connection");
        assert_eq!(state, lockkit_core::LeaseState::Lost, "round {round}");
        let error = lost.release().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotHeld, "{error}");
    }
    assert!(
        mine.connections() <= lockkit_postgres::PostgresConfig::default().sessions + 1,
        "{} connections",
        mine.connections()
    );
}

/// A grant made after waiting, at the `LockBackend` level: `other` holds
/// `name` until `backend` is queued for it. Returns the claim to present.
async fn claim_after_waiting(
    backend: &PostgresBackend,
    other: &Locker,
    admin: &Client,
    name: &str,
) -> Claim {
    let request = AcquireRequest {
        name: LockName::new(name).unwrap(),
        owner: OwnerToken::generate().unwrap(),
        ttl: TTL,
        wait: Wait::at_most(Duration::from_secs(10)),
    };
    let owner = request.owner;
    let key = backend.key_of(name).unwrap();
    let acquire = {
        let backend = backend.clone();
        async move { backend.acquire(request).await }
    };
    let grant = after_waiting(other, admin, key, name, acquire)
        .await
        .unwrap();
    Claim {
        name: LockName::new(name).unwrap(),
        owner,
        token: grant.token,
        handle: grant.handle,
    }
}

/// A claim presenting another owner's grant handle — by mistake or by a
/// wrapper mixing claims up — is refused and touches nothing: not the
/// holder's lock, not the waiter connection it is held on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_with_another_owners_handle_touches_nothing() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let (mine, _, other, admin) = one_waiter(&url).await;
    let key = mine.key_of("mixed").unwrap();

    let first = claim_after_waiting(&mine, &other, &admin, "mixed").await;
    mine.release(&first).await.unwrap();
    // The same waiter connection serves the next grant.
    let holder = claim_after_waiting(&mine, &other, &admin, "mixed").await;
    for mixed in [
        Claim {
            handle: holder.handle.clone(),
            ..first.clone()
        },
        Claim {
            handle: first.handle.clone(),
            ..holder.clone()
        },
    ] {
        let refused = mine.release(&mixed).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::NotHeld, "{refused}");
        let refused = mine.extend(&mixed, TTL).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::NotHeld, "{refused}");
        assert_eq!(
            held_at_server(&admin, &[key]).await.0,
            1,
            "the holder lost its lock"
        );
    }
    mine.extend(&holder, TTL).await.unwrap();
    mine.release(&holder).await.unwrap();
    assert_eq!(held_at_server(&admin, &[key]).await.0, 0);
}

/// Running out of waiter connections (`max_waiters`, each pinned by a lock
/// granted after waiting) never looks like contention: a free lock is
/// granted, a lock released during the wait is noticed, and when the limit
/// really is in the way the error names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_waiter_connections_never_keep_a_free_lock_from_being_granted() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let (mine, locks, other, admin) = one_waiter(&url).await;

    // Pin the only waiter connection: the lock it waited for stays on it.
    let pin = mine.key_of("pin").unwrap();
    let pinned = granted_after_waiting(&locks, &other, &admin, pin, "pin").await;

    // (a) Contended a moment ago (so a wait goes straight for the queue),
    // free now: granted at once.
    let holder = other.acquire("was-busy", Acquire::ttl(TTL)).await.unwrap();
    assert!(locks
        .try_acquire("was-busy", Acquire::ttl(TTL))
        .await
        .unwrap()
        .is_none());
    holder.release().await.unwrap();
    let started = Instant::now();
    let lease = locks
        .acquire("was-busy", Acquire::ttl(TTL).wait(Duration::from_secs(1)))
        .await
        .expect("a free lock was refused because no waiter connection was free");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    lease.release().await.unwrap();

    // (b) Released 200 ms into a 1.5 s wait: noticed without a waiter connection.
    let holder = other.acquire("released", Acquire::ttl(TTL)).await.unwrap();
    let waiting = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .acquire(
                    "released",
                    Acquire::ttl(TTL).wait(Duration::from_millis(1500)),
                )
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let released = Instant::now();
    holder.release().await.unwrap();
    let lease = waiting
        .await
        .unwrap()
        .expect("a lock released during the wait was not noticed");
    assert!(
        released.elapsed() < Duration::from_millis(800),
        "{:?}",
        released.elapsed()
    );
    lease.release().await.unwrap();

    // (c) Held throughout: the timeout names the limit that was in the way.
    let holder = other.acquire("held", Acquire::ttl(TTL)).await.unwrap();
    let error = locks
        .acquire("held", Acquire::ttl(TTL).wait(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    let message = error.to_string();
    assert!(message.contains("max_waiters = 1"), "{message}");
    assert!(message.contains("1 of them holding"), "{message}");
    holder.release().await.unwrap();
    pinned.release().await.unwrap();
}

/// Close, at the server: a waiting acquire leaves the queue, the held locks
/// are freed, and every connection of the client is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_leaves_nothing_queued_held_or_connected_at_the_server() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let namespace = unique_namespace();
    let application = format!("lockkit-close-{}", &namespace[namespace.len() - 12..]);
    let separator = if url.contains('?') { '&' } else { '?' };
    let own_url = format!("{url}{separator}application_name={application}");
    let mine = backend(&own_url, &namespace).await;
    let (locks, other) = (
        Locker::new(mine.clone()),
        Locker::new(backend(&url, &namespace).await),
    );
    let admin = raw(&url).await;
    let busy = other.acquire("busy", Acquire::ttl(TTL)).await.unwrap();
    let held = locks.acquire("held", Acquire::ttl(TTL)).await.unwrap();
    let waiting = tokio::spawn({
        let locks = locks.clone();
        async move { locks.acquire("busy", Acquire::ttl(TTL)).await }
    });
    let busy_key = mine.key_of("busy").unwrap();
    wait_until_queued(&admin, busy_key).await;

    locks.close().await.unwrap();
    let error = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("a waiting acquire outlived close")
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert_eq!(held.state(), lockkit_core::LeaseState::Lost);
    assert_eq!(
        held_at_server(&admin, &[mine.key_of("held").unwrap()])
            .await
            .0,
        0
    );
    assert_eq!(mine.connections(), 0);
    // The server notices closed sockets on its own time: poll its view.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (queued, connected): (i64, i64) = {
            let (classid, objid) = common::lock_columns(busy_key);
            let row = admin
                .query_one(
                    "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                     AND classid = $1 AND objid = $2 AND objsubid = 1 AND NOT granted), \
                     (SELECT count(*) FROM pg_stat_activity WHERE application_name = $3)",
                    &[&classid, &objid, &application],
                )
                .await
                .unwrap();
            (row.get(0), row.get(1))
        };
        if queued == 0 && connected == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after close: {queued} waits queued, {connected} connections open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    busy.release().await.unwrap();
}

/// Close ends an open locked transaction too: it rolls back, and its lock
/// is free for another client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_rolls_back_an_open_locked_transaction() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let (mine, theirs) = two_backends(&url).await;
    let transaction = mine
        .transaction("tx-at-close", Duration::from_secs(1))
        .await
        .unwrap();
    Locker::new(mine.clone()).close().await.unwrap();
    let taken = tokio::time::timeout(
        Duration::from_secs(5),
        theirs.transaction("tx-at-close", Duration::from_secs(4)),
    )
    .await
    .expect("the closed client's transaction kept its lock")
    .expect("the lock is free once its transaction's connection closed");
    taken.rollback().await.unwrap();
    assert!(
        transaction.commit().await.is_err(),
        "a commit after close succeeded"
    );
    assert_eq!(mine.connections(), 0);
}

#[tokio::test]
async fn status_names_the_holding_session_and_ignores_other_databases() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let namespace = unique_namespace();
    let backend = backend(&url, &namespace).await;
    let locks = Locker::new(backend.clone());
    let key = backend.key_of("elsewhere").unwrap();

    // The same key, locked by a session of another database: another lock.
    let (head, _) = url.rsplit_once('/').expect("a database in the test URL");
    let other = raw(&format!("{head}/postgres")).await;
    other
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
    assert_eq!(
        locks.status("elsewhere").await.unwrap(),
        lockkit_core::LockStatus::Free
    );

    // The same key in this database, taken outside lockkit: held, and by whom.
    let here = raw(&url).await;
    let pid: i32 = here
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    here.execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
    let status = locks.status("elsewhere").await.unwrap();
    let holder = status.holder().expect("held in this database");
    assert_eq!(holder.expiry, lockkit_core::Expiry::Session);
    assert_eq!(
        holder.token, None,
        "the fencing sequence is shared by every name"
    );
    let who = holder.holder.as_deref().unwrap_or_default();
    assert!(who.starts_with(&format!("backend pid {pid}")), "{who}");
    locks.close().await.unwrap();
}
