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

/// The `scripts/services` name of the server that leads the ensemble now,
/// asked with the `srvr` four-letter command.
pub async fn leader(servers: &[String]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for (index, server) in servers.iter().enumerate() {
        let Ok(mut stream) = tokio::net::TcpStream::connect(server).await else {
            continue;
        };
        if stream.write_all(b"srvr").await.is_err() {
            continue;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer).await;
        if answer.lines().any(|line| line == "Mode: leader") {
            return format!("zk-{}", index + 1);
        }
    }
    panic!("no server of {servers:?} says it leads");
}

/// `zkCli.sh -server <servers> <args>`, as an operator would run it; its
/// output, after it succeeded.
pub async fn zkcli(servers: &[String], args: &[&str]) -> String {
    let output = tokio::process::Command::new("/usr/share/zookeeper/bin/zkCli.sh")
        .arg("-server")
        .arg(servers.join(","))
        .args(args)
        .output()
        .await
        .expect("run zkCli.sh");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "zkCli.sh {args:?}: {text}");
    text
}

/// The lock nodes under `parent`, in sequence order, read with the driver.
pub async fn lock_nodes(servers: &[String], parent: &str) -> Vec<String> {
    let client = lockkit_zk::zookeeper_client::Client::connect(&servers.join(","))
        .await
        .expect("connect to the test ZooKeeper ensemble");
    let mut children = match client.list_children(parent).await {
        Ok(children) => children,
        Err(lockkit_zk::zookeeper_client::Error::NoNode) => Vec::new(),
        Err(error) => panic!("list {parent}: {error}"),
    };
    children.retain(|child| lockkit_zk::keys::sequence_of(child).is_some());
    children.sort_by_key(|child| lockkit_zk::keys::sequence_of(child));
    children
        .into_iter()
        .map(|child| format!("{parent}/{child}"))
        .collect()
}
