//! Server and role settings that would silently break a lock, met the way
//! a user's server has them: each test makes a role of its own with the
//! setting, connects as it, and drops the role and the schemas named after
//! it afterwards (also on panic).

use std::time::{Duration, Instant};

use lockkit_core::{Acquire, ErrorKind, LeaseState, Locker};
use lockkit_postgres::{PostgresBackend, PostgresOptions};
use lockkit_testkit::{server_from_env, unique_namespace};

mod common;
use common::{backend, raw, two_backends, wait_until_queued, OwnRole, ROLES};

const TTL: Duration = Duration::from_secs(30);

/// A role whose `statement_timeout` is 1 s: a 6 s acquire, and a 6 s
/// locked transaction, for a lock released after 2.5 s, are granted then
/// — lockkit's statements carry the timeouts lockkit means.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_statement_timeout_does_not_cut_a_wait_short() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let role = OwnRole::create(&url, &[("statement_timeout", "1s")]).await;
    let namespace = unique_namespace();
    let options = PostgresOptions::new().namespace(&namespace);
    let mine = PostgresBackend::connect_with(&role.url, options)
        .await
        .unwrap();
    let (locks, other) = (
        Locker::new(mine.clone()),
        Locker::new(backend(&url, &namespace).await),
    );
    let admin = raw(&url).await;

    for name in ["session-wait", "transaction-wait"] {
        let held = other.acquire(name, Acquire::ttl(TTL)).await.unwrap();
        let started = Instant::now();
        let waiting = tokio::spawn({
            let (locks, mine, name) = (locks.clone(), mine.clone(), name.to_owned());
            async move {
                let wait = Duration::from_secs(6);
                if name == "session-wait" {
                    locks
                        .acquire(&name, Acquire::ttl(TTL).wait(wait))
                        .await
                        .map(drop)
                } else {
                    mine.transaction(&name, wait).await.map(drop)
                }
            }
        });
        wait_until_queued(&admin, mine.key_of(name).unwrap()).await;
        tokio::time::sleep(Duration::from_millis(2500).saturating_sub(started.elapsed())).await;
        held.release().await.unwrap();
        waiting
            .await
            .unwrap()
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(2400) && waited < Duration::from_secs(5),
            "{name}: granted after {waited:?}"
        );
    }
    // The user's own statements in a locked transaction keep the role's setting.
    let transaction = mine
        .transaction("users-statements", Duration::from_secs(1))
        .await
        .unwrap();
    let error = transaction
        .client()
        .batch_execute("SELECT pg_sleep(2)")
        .await
        .unwrap_err();
    let message = error.as_db_error().map(|db| db.message().to_owned());
    assert!(
        message
            .as_deref()
            .is_some_and(|message| message.contains("statement timeout")),
        "{error:?}"
    );
    drop(transaction);
    locks.close().await.unwrap();
}

/// A role whose `idle_session_timeout` is 1 s: leases taken at once and
/// after waiting stay held through 3 s of idleness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_idle_session_timeout_does_not_end_held_locks() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let role = OwnRole::create(&url, &[("idle_session_timeout", "1s")]).await;
    let namespace = unique_namespace();
    let mine = backend(&role.url, &namespace).await;
    let (locks, other) = (
        Locker::new(mine.clone()),
        Locker::new(backend(&url, &namespace).await),
    );
    let admin = raw(&url).await;
    let at_once = locks.acquire("at-once", Acquire::ttl(TTL)).await.unwrap();
    let held = other.acquire("waited", Acquire::ttl(TTL)).await.unwrap();
    let waiting = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .acquire("waited", Acquire::ttl(TTL).wait(Duration::from_secs(10)))
                .await
        }
    });
    wait_until_queued(&admin, mine.key_of("waited").unwrap()).await;
    held.release().await.unwrap();
    let waited = waiting.await.unwrap().unwrap();

    // Idle for three of the role's timeouts. Nothing announces that a
    // session was not ended, so this waits them out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for lease in [&at_once, &waited] {
        assert_eq!(lease.state(), LeaseState::Held, "{}", lease.name());
        assert!(
            other
                .try_acquire(lease.name(), Acquire::ttl(TTL))
                .await
                .unwrap()
                .is_none(),
            "another client took `{}` from an idle session",
            lease.name()
        );
    }
    at_once.release().await.unwrap();
    waited.release().await.unwrap();
    locks.close().await.unwrap();
}

/// A wait longer than PostgreSQL's longest `lock_timeout` (about 24.8
/// days) is honoured: it waits, and is granted when the lock comes free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_of_thirty_days_is_honoured() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let (mine, theirs) = two_backends(&url).await;
    let (locks, other) = (Locker::new(mine.clone()), Locker::new(theirs));
    let admin = raw(&url).await;
    let month = Duration::from_secs(30 * 24 * 3600);
    for name in ["session-month", "transaction-month"] {
        let held = other.acquire(name, Acquire::ttl(TTL)).await.unwrap();
        let waiting = tokio::spawn({
            let (locks, mine, name) = (locks.clone(), mine.clone(), name.to_owned());
            async move {
                if name == "session-month" {
                    locks
                        .acquire(&name, Acquire::ttl(TTL).wait(month))
                        .await
                        .map(drop)
                } else {
                    mine.transaction(&name, month).await.map(drop)
                }
            }
        });
        wait_until_queued(&admin, mine.key_of(name).unwrap()).await;
        held.release().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the month-long wait was not granted")
            .unwrap()
            .unwrap_or_else(|error| panic!("{name}: {error}"));
    }
}

/// A role whose sessions are read-only by default is refused at connect,
/// naming the setting — not at every acquire afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_role_is_refused_at_connect() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let role = OwnRole::create(&url, &[("default_transaction_read_only", "on")]).await;
    let error = PostgresBackend::connect_with(
        &role.url,
        PostgresOptions::new().namespace(unique_namespace()),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(
        error.message().contains("default_transaction_read_only"),
        "{error}"
    );
}

/// The statement between the last pair of backticks of `message`: what
/// the error tells a DBA to run.
fn suggested_statement(message: &str) -> &str {
    let end = message.rfind('`').expect("a statement in backticks");
    let start = message[..end].rfind('`').expect("a statement in backticks");
    &message[start + 1..end]
}

/// A role without CREATE on the database that owns an existing schema uses
/// it: only a missing schema needs the database privilege.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owned_schema_is_used_without_create_on_the_database() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let role = OwnRole::create(&url, &[]).await;
    let schema = format!("{}_own", role.name);
    let turn = ROLES.lock().await;
    raw(&url)
        .await
        .batch_execute(&format!(
            "CREATE SCHEMA {schema} AUTHORIZATION {}",
            role.name
        ))
        .await
        .unwrap();
    drop(turn);
    let options = PostgresOptions::new()
        .namespace(unique_namespace())
        .schema(&schema);
    let locks = Locker::new(
        PostgresBackend::connect_with(&role.url, options)
            .await
            .expect("the role's own schema is used"),
    );
    let lease = locks.acquire("owned", Acquire::ttl(TTL)).await.unwrap();
    assert!(lease.fencing_token().get() >= 1);
    lease.release().await.unwrap();
}

/// Each privilege the fencing sequence needs, when missing, is a `Config`
/// error naming it and the statement a DBA can run; after running exactly
/// that statement, connect succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_privilege_is_named_with_the_statement_that_grants_it() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let role = OwnRole::create(&url, &[]).await;
    let admin = raw(&url).await;
    let connect = |schema: String| {
        let url = role.url.clone();
        async move {
            let options = PostgresOptions::new()
                .namespace(unique_namespace())
                .schema(schema);
            PostgresBackend::connect_with(&url, options).await
        }
    };
    // A schema the role may not create, one it may not create in, and a
    // sequence it may not take tokens from.
    let (missing, foreign, closed) = (
        format!("{}_missing", role.name),
        format!("{}_foreign", role.name),
        format!("{}_closed", role.name),
    );
    let turn = ROLES.lock().await;
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA {foreign}; CREATE SCHEMA {closed}; \
             CREATE SEQUENCE {closed}.fence AS bigint MINVALUE 1 NO CYCLE;"
        ))
        .await
        .unwrap();
    drop(turn);
    let cases = [
        (&missing, "CREATE on database"),
        (&foreign, "GRANT USAGE, CREATE ON SCHEMA"),
        (&closed, "GRANT USAGE ON SEQUENCE"),
    ];
    for (schema, names) in cases {
        let error = connect(schema.clone()).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{schema}: {error}");
        let message = error.message();
        assert!(message.contains(names), "{schema}: {message}");
        assert!(message.contains(&role.name), "{schema}: {message}");
        let turn = ROLES.lock().await;
        admin
            .batch_execute(suggested_statement(message))
            .await
            .unwrap_or_else(|error| panic!("{schema}: the suggested statement failed: {error}"));
        drop(turn);
        connect(schema.clone())
            .await
            .unwrap_or_else(|error| panic!("{schema}: after the suggested statement: {error}"));
    }
}

/// A role whose `search_path` puts a schema of look-alike functions before
/// `pg_catalog` (one where `pg_try_advisory_lock` always answers true)
/// still gets one holder at a time: lockkit's statements call the server's
/// own functions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_search_path_cannot_stand_in_for_the_lock_functions() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let role = OwnRole::create(&url, &[]).await;
    let shadow = format!("{}_shadow", role.name);
    let turn = ROLES.lock().await;
    raw(&url)
        .await
        .batch_execute(&format!(
            "CREATE SCHEMA {shadow}; GRANT USAGE ON SCHEMA {shadow} TO {name}; \
             CREATE FUNCTION {shadow}.pg_try_advisory_lock(bigint) RETURNS boolean \
               LANGUAGE sql AS 'SELECT true'; \
             CREATE FUNCTION {shadow}.pg_try_advisory_xact_lock(bigint) RETURNS boolean \
               LANGUAGE sql AS 'SELECT true'; \
             ALTER ROLE {name} SET search_path = {shadow}, pg_catalog;",
            name = role.name
        ))
        .await
        .unwrap();
    drop(turn);
    let namespace = unique_namespace();
    let connect = || async {
        let options = PostgresOptions::new().namespace(&namespace);
        PostgresBackend::connect_with(&role.url, options)
            .await
            .unwrap()
    };
    let (mine, theirs) = (connect().await, connect().await);
    let (locks, other) = (Locker::new(mine.clone()), Locker::new(theirs.clone()));

    let held = locks
        .try_acquire("shadowed", Acquire::ttl(TTL))
        .await
        .unwrap()
        .expect("a free lock is granted");
    assert!(
        other
            .try_acquire("shadowed", Acquire::ttl(TTL))
            .await
            .unwrap()
            .is_none(),
        "a held lock was granted again"
    );
    held.release().await.unwrap();

    let transaction = mine
        .try_transaction("shadowed-tx")
        .await
        .unwrap()
        .expect("a free lock is granted");
    assert!(
        theirs
            .try_transaction("shadowed-tx")
            .await
            .unwrap()
            .is_none(),
        "a held transaction lock was granted again"
    );
    transaction.commit().await.unwrap();
}

/// A hot standby is refused at connect, saying so: every grant takes its
/// fencing token with `nextval`, which a standby cannot run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_standby_is_refused_at_connect() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_STANDBY") else {
        return;
    };
    let options = PostgresOptions::new().namespace(unique_namespace());
    let error = PostgresBackend::connect_with(&url, options)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.message().contains("hot standby"), "{error}");
}

/// A role whose CONNECTION LIMIT is below what the client may open is
/// refused at connect, naming the limit and the options, instead of
/// failing its first contended acquire; options within the limit connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_limit_below_the_clients_is_refused_at_connect() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let role = OwnRole::create(&url, &[]).await;
    let turn = ROLES.lock().await;
    raw(&url)
        .await
        .batch_execute(&format!("ALTER ROLE {} CONNECTION LIMIT 5", role.name))
        .await
        .unwrap();
    drop(turn);
    let options = PostgresOptions::new().namespace(unique_namespace());
    let error = PostgresBackend::connect_with(&role.url, options.clone())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    let message = error.message();
    assert!(message.contains("CONNECTION LIMIT"), "{message}");
    assert!(message.contains("max_waiters"), "{message}");
    let within = options.sessions(1).max_waiters(2).max_transactions(2);
    PostgresBackend::connect_with(&role.url, within)
        .await
        .expect("options within the limit connect");
}
