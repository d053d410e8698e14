//! Test support for lockkit's crates — not part of the published contract
//! (`publish = false`). The contract's own checks, the conformance cases
//! and their macro, stay in `lockkit_core::conformance`.
//!
//! - [`server_from_env`]: the address of a server of `scripts/services`
//!   from its `LOCKKIT_TEST_*` variable, or a skip (a failure under
//!   `LOCKKIT_TEST_REQUIRE=1`);
//! - [`unique_namespace`]: keys of one test run never meet another's;
//! - [`Services`] and [`Fault`]: stop, kill or pause one server, and
//!   always bring it back;
//! - [`acquire_when_back`]: the one poll the failure tests share.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![forbid(unsafe_code)]

use std::collections::HashSet;

use lockkit_core::OwnerToken;

mod faults;

pub use faults::{
    a_short_pause_leaves_the_lock_uncertain, acquire_when_back, held_within, restore_all, Fault,
    Services,
};

/// The value of the server variable `var` (`LOCKKIT_TEST_REDIS_URL`, …).
///
/// Missing, it prints why the test is skipped and returns `None` — unless
/// `LOCKKIT_TEST_REQUIRE=1` (set by `scripts/test`), where a missing server
/// fails the test instead.
pub fn server_from_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ if std::env::var("LOCKKIT_TEST_REQUIRE").is_ok_and(|v| v == "1") => {
            panic!("{var} is not set and LOCKKIT_TEST_REQUIRE=1: start the servers with `scripts/services up` and load `scripts/services env`")
        }
        _ => {
            eprintln!("SKIPPED: {var} is not set; run `scripts/test`, or point {var} at a server");
            None
        }
    }
}

/// A namespace of its own for one test run (`lockkit-test-<random hex>`),
/// so runs on a shared server never see each other's keys.
pub fn unique_namespace() -> String {
    let suffix = OwnerToken::generate()
        .expect("the operating system's random source")
        .to_hex();
    format!("lockkit-test-{suffix}")
}

/// This process's resident memory in KiB, from `/proc` (Linux); `None`
/// elsewhere. For tests that report what holding many locks costs.
pub fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Try-acquires every one of `names` — each free — through `locks`, from
/// `tasks` tasks at once; the leases, in no particular order. Panics if a
/// name is held or an acquire fails. For tests that hold many locks.
pub async fn try_acquire_all(
    locks: &lockkit_core::Locker,
    names: std::sync::Arc<Vec<String>>,
    tasks: usize,
    options: lockkit_core::Acquire,
) -> Vec<lockkit_core::Lease> {
    let mut running = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let (locks, names) = (locks.clone(), std::sync::Arc::clone(&names));
        running.spawn(async move {
            let mut leases = Vec::new();
            for name in names.iter().skip(task).step_by(tasks) {
                match locks.try_acquire(name, options).await {
                    Ok(Some(lease)) => leases.push(lease),
                    Ok(None) => panic!("{name} is held, yet every name is free"),
                    Err(error) => panic!("acquire {name}: {error}"),
                }
            }
            leases
        });
    }
    running.join_all().await.into_iter().flatten().collect()
}

/// The TCP connections this process has open to `members` (`host:port`,
/// matched by port), counted from `/proc`: a backend's connections, for
/// tests that hold many locks on few of them.
pub fn connections_to(members: &[String]) -> usize {
    let ports: HashSet<u16> = members
        .iter()
        .filter_map(|member| member.rsplit(':').next()?.parse().ok())
        .collect();
    let inodes: HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.filter_map(|fd| {
                let target = std::fs::read_link(fd.ok()?.path()).ok()?;
                let target = target.to_str()?;
                Some(
                    target
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .to_owned(),
                )
            })
            .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state), Some(inode)) =
                (fields.get(2), fields.get(3), fields.get(9))
            else {
                return false;
            };
            let port = remote
                .rsplit(':')
                .next()
                .and_then(|port| u16::from_str_radix(port, 16).ok());
            // 01: ESTABLISHED.
            *state == "01"
                && port.is_some_and(|port| ports.contains(&port))
                && inodes.contains(*inode)
        })
        .count()
}
