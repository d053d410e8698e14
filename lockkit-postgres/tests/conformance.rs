//! The whole conformance suite against the real PostgreSQL of
//! `scripts/services` (`LOCKKIT_TEST_POSTGRES_URL`), every client on its own
//! connections, under a namespace of its own per run.

use lockkit_core::conformance::Target;
use lockkit_core::Locker;
use lockkit_postgres::{PostgresBackend, PostgresOptions};
use lockkit_testkit::{server_from_env, unique_namespace};

async fn target() -> Option<impl Target> {
    let url = server_from_env("LOCKKIT_TEST_POSTGRES_URL")?;
    let namespace = unique_namespace();
    Some(move || {
        let (url, options) = (url.clone(), PostgresOptions::new().namespace(&namespace));
        async move {
            let backend = PostgresBackend::connect_with(&url, options)
                .await
                .expect("connect to the test PostgreSQL");
            Locker::new(backend)
        }
    })
}

lockkit_core::conformance_suite!(target());
