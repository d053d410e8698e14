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
