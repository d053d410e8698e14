//! Connection strings as libpq users write them, against the real server
//! of `scripts/services`, which serves TLS with a test authority's
//! certificate for the name `localhost` only ($LOCKKIT_TEST_POSTGRES_TLS
//! holds that authority, an untrusted one, and a client certificate for
//! the role `lockkit_cert`).

use std::time::Duration;

use lockkit_core::{Acquire, ErrorKind, Locker};
use lockkit_postgres::{PostgresBackend, PostgresOptions};
use lockkit_testkit::{server_from_env, unique_namespace};

/// The folder of test certificates, or `None` (skip, or panic under
/// LOCKKIT_TEST_REQUIRE=1).
fn certificates() -> Option<String> {
    server_from_env("LOCKKIT_TEST_POSTGRES_TLS")
}

async fn connect(url: &str) -> lockkit_core::Result<PostgresBackend> {
    connect_as(url, PostgresOptions::new()).await
}

async fn connect_as(url: &str, options: PostgresOptions) -> lockkit_core::Result<PostgresBackend> {
    PostgresBackend::connect_with(url, options.namespace(unique_namespace())).await
}

/// Whether `backend`'s sessions are encrypted, as the server sees them.
async fn encrypted(backend: &PostgresBackend) -> bool {
    let transaction = backend
        .transaction("tls", Duration::from_secs(5))
        .await
        .unwrap();
    let row = transaction
        .client()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    row.get(0)
}

fn assert_refused(result: lockkit_core::Result<PostgresBackend>, url: &str) {
    let error = result.expect_err(&format!("{url} was accepted"));
    assert_eq!(error.kind(), ErrorKind::Config, "{url}: {error}");
    assert!(!error.is_retryable(), "{url}: {error}");
    assert!(error.message().contains("certificate"), "{url}: {error}");
}

/// `verify-full` checks the chain and the host name; `verify-ca` the chain
/// only; `require` with `sslrootcert` is `verify-ca` (libpq's rule), and
/// without it checks against the platform's roots, which do not know the
/// test authority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_check_what_they_name() {
    let Some(tls) = certificates() else {
        return;
    };
    let (trusted, untrusted) = (format!("{tls}/ca.pem"), format!("{tls}/other-ca.pem"));
    let url = |host: &str, mode: &str, root: &str| {
        format!("postgres://postgres@{host}:5432/lockkit?sslmode={mode}&sslrootcert={root}")
    };
    for accepted in [
        url("localhost", "verify-full", &trusted),
        url("127.0.0.1", "verify-ca", &trusted),
        url("localhost", "verify-ca", &trusted),
        url("127.0.0.1", "require", &trusted),
    ] {
        let backend = connect(&accepted)
            .await
            .unwrap_or_else(|error| panic!("{accepted}: {error}"));
        assert!(
            encrypted(&backend).await,
            "{accepted} connected in plain text"
        );
    }
    for refused in [
        // The certificate is for `localhost`, not 127.0.0.1.
        url("127.0.0.1", "verify-full", &trusted),
        url("localhost", "verify-full", &untrusted),
        url("127.0.0.1", "verify-ca", &untrusted),
        url("127.0.0.1", "require", &untrusted),
        "postgres://postgres@localhost:5432/lockkit?sslmode=require".to_owned(),
        "postgres://postgres@localhost:5432/lockkit?sslmode=require&sslrootcert=system".to_owned(),
        "postgres://postgres@localhost:5432/lockkit?sslmode=verify-full".to_owned(),
    ] {
        assert_refused(connect(&refused).await, &refused);
    }
    for plain in ["disable", "allow", "prefer"] {
        let url = format!("postgres://postgres@localhost:5432/lockkit?sslmode={plain}");
        let backend = connect(&url).await.unwrap();
        assert!(!encrypted(&backend).await, "{url} used TLS");
    }
}

/// libpq's keyword form works as the URL form does, quoting included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyword_form_connects() {
    let Some(tls) = certificates() else {
        return;
    };
    let keywords = format!(
        "host=localhost port=5432 user=postgres dbname = lockkit \
         sslmode=verify-full sslrootcert='{tls}/ca.pem' application_name='lockkit keyword test'"
    );
    let locks = Locker::new(connect(&keywords).await.unwrap());
    let lease = locks
        .acquire("keyword", Acquire::ttl(Duration::from_secs(30)))
        .await
        .unwrap();
    lease.release().await.unwrap();
}

/// A role that logs in by client certificate connects with `sslcert` and
/// `sslkey`, and is refused without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_logs_in() {
    let Some(tls) = certificates() else {
        return;
    };
    let base = format!(
        "postgres://lockkit_cert@localhost:5432/lockkit?sslmode=verify-full&sslrootcert={tls}/ca.pem"
    );
    let options = || PostgresOptions::new().schema("lockkit_cert");
    let with_certificate = format!("{base}&sslcert={tls}/client.pem&sslkey={tls}/client.key");
    let backend = connect_as(&with_certificate, options())
        .await
        .unwrap_or_else(|error| panic!("{with_certificate}: {error}"));
    assert!(encrypted(&backend).await);
    let error = connect_as(&base, options()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
}

/// A parameter lockkit cannot honour is refused naming it, and a malformed
/// URL names the part that is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_parameter_is_named() {
    for (url, names) in [
        (
            "postgres://postgres@localhost/lockkit?sslmode=verify",
            "sslmode",
        ),
        (
            "postgres://postgres@localhost/lockkit?sslcrl=/x.pem",
            "sslcrl",
        ),
        (
            "postgres://postgres@localhost/lockkit?sslcert=/x.pem",
            "sslkey",
        ),
        ("postgres://postgres@localhost:port/lockkit", "port"),
        (
            "postgres://postgres@localhost/lockkit?no_such_option=1",
            "no_such_option",
        ),
        (
            "host=localhost sslrootcert=/no/such/file.pem sslmode=verify-ca",
            "/no/such/file.pem",
        ),
    ] {
        let error = connect(url).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{url}: {error}");
        assert!(error.message().contains(names), "{url}: {error}");
    }
}
