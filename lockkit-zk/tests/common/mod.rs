//! What the ZooKeeper test binaries share: the ensemble's address, clients,
//! and `zkCli.sh` as an operator would run it.

#![allow(dead_code)]

use std::time::Duration;

use lockkit_testkit::{server_from_env, unique_namespace};
use lockkit_zk::{ZkBackend, ZkOptions};

/// The ensemble of `scripts/services`: its `zk://` URL and its servers'
/// `host:port`, or `None` (skip, or panic under LOCKKIT_TEST_REQUIRE=1).
pub fn ensemble() -> Option<(String, Vec<String>)> {
    let connect = server_from_env("LOCKKIT_TEST_ZK_CONNECT")?;
    let servers: Vec<String> = connect.split(',').map(str::to_owned).collect();
    Some((format!("zk://{connect}"), servers))
}

/// A backend on `url` under `namespace`, with a session timeout of
/// `session_timeout` and requests bounded by `response_timeout`.
pub async fn backend(
    url: &str,
    namespace: &str,
    session_timeout: Duration,
    response_timeout: Duration,
) -> ZkBackend {
    let options = ZkOptions::new()
        .namespace(namespace)
        .session_timeout(session_timeout)
        .response_timeout(response_timeout);
    ZkBackend::connect_with(url, options)
        .await
        .expect("connect to the test ZooKeeper ensemble")
}

/// A fresh namespace.
pub fn namespace() -> String {
    unique_namespace()
}
