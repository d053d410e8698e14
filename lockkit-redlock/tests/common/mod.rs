//! What the Redlock test binaries share: the five independent Redis
//! servers of `scripts/services` and clients on them.

#![allow(dead_code)]

use lockkit_redlock::{RedlockBackend, RedlockOptions};
use lockkit_testkit::server_from_env;

/// The nodes' `redis://` URLs (`LOCKKIT_TEST_REDLOCK_URLS`), or `None`
/// (skip, or panic under LOCKKIT_TEST_REQUIRE=1).
pub fn nodes() -> Option<Vec<String>> {
    let urls = server_from_env("LOCKKIT_TEST_REDLOCK_URLS")?;
    Some(urls.split(',').map(str::to_owned).collect())
}

/// The `scripts/services` name of node `index` (0-based): `redlock-1` …
pub fn service(index: usize) -> String {
    format!("redlock-{}", index + 1)
}

/// A backend on every node, with `options`.
pub async fn backend(nodes: &[String], options: RedlockOptions) -> RedlockBackend {
    RedlockBackend::connect_nodes(nodes, options)
        .await
        .expect("connect to the test Redlock nodes")
}
