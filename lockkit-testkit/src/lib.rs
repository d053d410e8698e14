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

use lockkit_core::OwnerToken;

mod faults;

pub use faults::{acquire_when_back, Fault, Services};

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
