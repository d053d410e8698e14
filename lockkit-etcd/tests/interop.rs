//! lockkit and `etcdctl lock` on one name: the same queue layout as etcd's
//! `concurrency.Mutex`, so each waits for the other, either way round.

use std::time::Duration;

use lockkit_core::{Acquire, Locker};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

mod common;
use common::{backend, cluster, namespace, spawn_etcdctl};

const TTL: Duration = Duration::from_secs(30);

/// `etcdctl lock <lock> -- sh -c 'echo held; sleep <seconds>'`, once it
/// says it holds the lock: it lets go when the command exits.
async fn etcdctl_holding(members: &[String], lock: &str, seconds: &str) -> Child {
    let script = format!("echo held; sleep {seconds}");
    let mut etcdctl = spawn_etcdctl(members, &["lock", lock, "--", "sh", "-c", &script]);
    let stdout = etcdctl.stdout.take().expect("piped");
    let first = tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .expect("etcdctl did not get the free lock")
    .expect("etcdctl's output");
    assert_eq!(first.as_deref(), Some("held"));
    etcdctl
}

/// While `etcdctl lock <ns>/<name>` holds the name, a lockkit try finds it
/// held and an acquire waits; when etcdctl lets go, lockkit gets the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockkit_waits_for_etcdctl_lock() {
    let Some((url, members)) = cluster() else {
        return;
    };
    let namespace = namespace();
    let locks = Locker::new(backend(&url, &namespace, 10, Duration::from_secs(2)).await);
    let lock_name = format!("{namespace}/interop:etcdctl-first");
    // Held for 1.5 s, then etcdctl lets go.
    let mut etcdctl = etcdctl_holding(&members, &lock_name, "1.5").await;

    let blocked = locks
        .try_acquire("interop:etcdctl-first", Acquire::ttl(TTL))
        .await
        .unwrap();
    assert!(blocked.is_none(), "lockkit got a lock etcdctl holds");
    let waited = std::time::Instant::now();
    let lease = locks
        .acquire(
            "interop:etcdctl-first",
            Acquire::ttl(TTL).wait(Duration::from_secs(10)),
        )
        .await
        .expect("lockkit gets the lock once etcdctl lets go");
    let status = tokio::time::timeout(Duration::from_secs(5), etcdctl.wait())
        .await
        .expect("etcdctl exited")
        .unwrap();
    assert!(status.success(), "etcdctl failed: {status}");
    assert!(
        waited.elapsed() >= Duration::from_millis(500),
        "lockkit did not wait for etcdctl ({:?})",
        waited.elapsed()
    );
    lease.release().await.unwrap();
}

/// While lockkit holds a name, `etcdctl lock <ns>/<name>` waits; when
/// lockkit releases, etcdctl gets the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lock_waits_for_lockkit() {
    let Some((url, members)) = cluster() else {
        return;
    };
    let namespace = namespace();
    let locks = Locker::new(backend(&url, &namespace, 10, Duration::from_secs(2)).await);
    let lease = locks
        .acquire("interop:lockkit-first", Acquire::ttl(TTL))
        .await
        .unwrap();
    let lock_name = format!("{namespace}/interop:lockkit-first");
    let mut etcdctl = spawn_etcdctl(&members, &["lock", &lock_name, "echo", "got"]);
    let stdout = etcdctl.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let early = tokio::time::timeout(Duration::from_millis(1500), lines.next_line()).await;
    assert!(
        early.is_err(),
        "etcdctl got a lock lockkit holds: {early:?}"
    );
    lease.release().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
        .await
        .expect("etcdctl did not get the lock lockkit released")
        .expect("etcdctl's output");
    assert_eq!(got.as_deref(), Some("got"));
    let status = etcdctl.wait().await.unwrap();
    assert!(status.success(), "etcdctl failed: {status}");
}

/// `etcdctl lock <ns>/<name>/<more>` is another lock: its key sits inside
/// the range of `<ns>/<name>/`, yet it does not block lockkit's `<name>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeper_etcdctl_lock_does_not_block_a_lockkit_name() {
    let Some((url, members)) = cluster() else {
        return;
    };
    let namespace = namespace();
    let locks = Locker::new(backend(&url, &namespace, 10, Duration::from_secs(2)).await);
    let deeper = format!("{namespace}/interop:outer/inner");
    let mut etcdctl = etcdctl_holding(&members, &deeper, "3").await;
    let lease = locks
        .try_acquire("interop:outer", Acquire::ttl(TTL))
        .await
        .unwrap()
        .expect("another tool's deeper lock blocked a lockkit name");
    lease.release().await.unwrap();
    let _ = etcdctl.kill().await;
}
