//! What the etcd test binaries share: the cluster's address, clients, and
//! `etcdctl` as an operator would run it.

#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use lockkit_etcd::etcd_client::Client;
use lockkit_etcd::{EtcdBackend, EtcdOptions};
use lockkit_testkit::{server_from_env, unique_namespace};
use tokio::process::{Child, Command};

/// The cluster of `scripts/services`: its `etcd://` URL and its members'
/// `host:port`, or `None` (skip, or panic under LOCKKIT_TEST_REQUIRE=1).
pub fn cluster() -> Option<(String, Vec<String>)> {
    let endpoints = server_from_env("LOCKKIT_TEST_ETCD_ENDPOINTS")?;
    Some((url(&endpoints), members(&endpoints)))
}

/// The `etcd://` URL of the endpoints `scripts/services` lists
/// (`http://127.0.0.1:2379,http://127.0.0.1:22379,…`).
pub fn url(endpoints: &str) -> String {
    format!("etcd://{}", members(endpoints).join(","))
}

fn members(endpoints: &str) -> Vec<String> {
    endpoints
        .split(',')
        .map(|endpoint| endpoint.trim_start_matches("http://").to_owned())
        .collect()
}

/// A backend on `url` under a namespace of its own, with a session lease of
/// `session_ttl` and requests bounded by `response_timeout`.
pub async fn backend(
    url: &str,
    namespace: &str,
    session_ttl: u64,
    response_timeout: Duration,
) -> EtcdBackend {
    let options = EtcdOptions::new()
        .namespace(namespace)
        .session_ttl(Duration::from_secs(session_ttl))
        .response_timeout(response_timeout);
    EtcdBackend::connect_with(url, options)
        .await
        .expect("connect to the test etcd cluster")
}

/// A fresh namespace.
pub fn namespace() -> String {
    unique_namespace()
}

/// The `scripts/services` name of the member that leads the cluster now.
pub async fn leader(members: &[String]) -> String {
    for member in members {
        let Ok(mut client) = Client::connect([format!("http://{member}")], None).await else {
            continue;
        };
        let Ok(status) = client.status().await else {
            continue;
        };
        let Some(header) = status.header() else {
            continue;
        };
        if status.leader() == header.member_id() {
            let index = members.iter().position(|m| m == member).unwrap_or(0);
            return format!("etcd-{}", index + 1);
        }
    }
    panic!("no member of {members:?} says it leads");
}

/// `etcdctl <args>` against `members`, as an operator would run it; its
/// standard output, after it succeeded.
pub async fn etcdctl(members: &[String], args: &[&str]) -> String {
    let output = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", members.join(",")))
        .args(args)
        .output()
        .await
        .expect("etcdctl runs (scripts/services installs etcd-client)");
    assert!(
        output.status.success(),
        "etcdctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `etcdctl <args>` started, its standard output piped.
pub fn spawn_etcdctl(members: &[String], args: &[&str]) -> Child {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", members.join(",")))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("etcdctl runs (scripts/services installs etcd-client)")
}
