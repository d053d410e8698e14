//! Fault injection on the real servers of `scripts/services`, for backends'
//! failure tests: stop, kill or pause one server, and always bring it back.

use std::process::Command;

use crate::server_from_env;

/// The `scripts/services` of this checkout, named by `LOCKKIT_TEST_SERVICES`.
///
/// Tests that stop or pause a shared server must not run beside tests that
/// use it: keep them in a test binary of their own and serialize them
/// (cargo runs test binaries one at a time).
#[derive(Debug, Clone)]
pub struct Services {
    script: String,
}

/// A server taken down by [`Services`]; dropping it brings the server back
/// (started again, or resumed) and waits until it answers, also when the
/// test panicked.
#[derive(Debug)]
#[must_use = "the server comes back when this is dropped"]
pub struct Fault {
    services: Services,
    server: String,
    undo: &'static str,
    restored: bool,
}

impl Services {
    /// The control script, or `None` (after saying why) when
    /// `LOCKKIT_TEST_SERVICES` is unset; under `LOCKKIT_TEST_REQUIRE=1` that panics.
    pub fn from_env() -> Option<Self> {
        server_from_env("LOCKKIT_TEST_SERVICES").map(|script| Self { script })
    }

    /// Stops `server` (SIGTERM, waiting until it exited).
    pub fn stop(&self, server: &str) -> Fault {
        self.fault(server, "stop", "start")
    }

    /// Kills `server` (SIGKILL): no shutdown work, as in a crash.
    pub fn kill(&self, server: &str) -> Fault {
        self.fault(server, "kill", "start")
    }

    /// Pauses `server` (SIGSTOP): its connections stay open and nothing answers.
    pub fn pause(&self, server: &str) -> Fault {
        self.fault(server, "pause", "resume")
    }

    fn fault(&self, server: &str, verb: &str, undo: &'static str) -> Fault {
        self.run(verb, server);
        Fault {
            services: self.clone(),
            server: server.to_owned(),
            undo,
            restored: false,
        }
    }

    fn run(&self, verb: &str, server: &str) {
        let status = Command::new(&self.script)
            .args([verb, server])
            .status()
            .unwrap_or_else(|error| panic!("{} {verb} {server}: {error}", self.script));
        assert!(
            status.success(),
            "{} {verb} {server} failed: {status}",
            self.script
        );
    }
}

impl Fault {
    /// Brings the server back now and waits until it answers.
    pub fn restore(mut self) {
        self.restore_once();
    }

    fn restore_once(&mut self) {
        if !std::mem::replace(&mut self.restored, true) {
            self.services.run(self.undo, &self.server);
        }
    }
}

impl Drop for Fault {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Still bring the server back for the tests that follow, but do
            // not turn the first failure into an abort.
            if !self.restored {
                self.restored = true;
                let _ = Command::new(&self.services.script)
                    .args([self.undo, &self.server])
                    .status();
            }
        } else {
            self.restore_once();
        }
    }
}

/// Try-acquires the free lock `name` until the server answers again after a
/// fault: retries while the error is `Unavailable`, for at most `within`.
///
/// No event announces a reconnect or a server that finished starting, so
/// this is the one poll the failure tests share. Panics if the lock is held
/// or another error comes, or when `within` has passed.
pub async fn acquire_when_back(
    locks: &lockkit_core::Locker,
    name: &str,
    options: lockkit_core::Acquire,
    within: std::time::Duration,
) -> lockkit_core::Lease {
    let deadline = std::time::Instant::now() + within;
    loop {
        match locks.try_acquire(name, options).await {
            Ok(Some(lease)) => return lease,
            Ok(None) => panic!("nobody else holds {name}, yet it is held"),
            Err(error)
                if error.kind() == lockkit_core::ErrorKind::Unavailable
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(error) => {
                panic!("{name} not granted within {within:?} of the fault's end: {error}")
            }
        }
    }
}

/// Brings every server of `faults` back at once, and waits until each
/// answers: a cluster member alone has no quorum, and would never answer
/// the readiness check if brought back one at a time.
pub async fn restore_all(faults: Vec<Fault>) {
    let restoring: Vec<_> = faults
        .into_iter()
        .map(|fault| tokio::task::spawn_blocking(move || fault.restore()))
        .collect();
    for restored in restoring {
        restored.await.expect("a server came back");
    }
}

/// Waits until `lease` is Held again after a fault, for at most `within`;
/// panics if it is ever Lost meanwhile, or stays Uncertain.
///
/// No event announces a session back on a server to the test: a short poll.
pub async fn held_within(lease: &lockkit_core::Lease, within: std::time::Duration) {
    let view = lease.view();
    let deadline = std::time::Instant::now() + within;
    while view.state() != lockkit_core::LeaseState::Held {
        assert_ne!(
            view.state(),
            lockkit_core::LeaseState::Lost,
            "lost while only Uncertain"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the lease stayed {:?}",
            view.state()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Every server of `servers` paused for less than the session timeout: the
/// lease `locks` holds on `name` turns Uncertain before its session's
/// bound — never Lost — and Held again once they answer, and `other` (a
/// client on a session of its own) finds the lock still held.
///
/// The scenario the session backends (ZooKeeper, etcd) share; the caller
/// gives `locks` a response timeout short enough to notice within 6 s.
pub async fn a_short_pause_leaves_the_lock_uncertain(
    services: &Services,
    servers: &[&str],
    locks: &lockkit_core::Locker,
    other: &lockkit_core::Locker,
    name: &str,
) {
    use lockkit_core::{Acquire, LeaseState};
    use std::time::{Duration, Instant};
    let options = Acquire::ttl(Duration::from_secs(30));
    let held = locks.acquire(name, options).await.unwrap();
    let view = held.view();

    let faults: Vec<Fault> = servers
        .iter()
        .map(|server| services.pause(server))
        .collect();
    let seen = tokio::time::timeout(Duration::from_secs(6), view.not_held())
        .await
        .expect("the lease stayed Held with every server paused");
    assert_eq!(seen, LeaseState::Uncertain);
    let bound = held
        .valid_until()
        .expect("a session lease has its session's bound");
    assert!(Instant::now() < bound, "Uncertain only at the bound");
    restore_all(faults).await;

    held_within(&held, Duration::from_secs(10)).await;
    let blocked = other.try_acquire(name, options).await.unwrap();
    assert!(blocked.is_none(), "the lock was free after the pause");
    held.release().await.unwrap();
}
