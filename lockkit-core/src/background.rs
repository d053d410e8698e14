//! Work that must finish after the future or value that started it is
//! gone: the undo step of a cancelled acquire, the release of a dropped
//! lease. Every backend's undo steps go through here.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

/// Runs undo work in the background, from async code or from a `Drop` on
/// any thread, and lets `close` wait for it.
///
/// It remembers the tokio runtime current when it was made (or at the
/// first [`capture`](Self::capture) inside one), so a `Drop` on a thread
/// without a runtime — a lease moved to a plain `std::thread` — still
/// reaches the runtime the backend's connections live on. Clones share the
/// runtime and the set of running tasks.
///
/// # Cancel safety
///
/// Work handed to [`spawn`](Self::spawn) runs to its end even if the
/// caller is dropped; it is ended early only by the runtime shutting down,
/// where the TTL or the session's end is the backstop.
#[derive(Clone, Default)]
pub struct Background {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    runtime: OnceLock<Handle>,
    tasks: TaskTracker,
}

impl Background {
    /// A background for work started from here on; remembers the current
    /// runtime, if there is one.
    pub fn new() -> Self {
        let background = Self::default();
        background.capture();
        background
    }

    /// Remembers the current runtime if none is remembered yet. Cheap: call
    /// it at the start of every operation that may leave work behind.
    pub fn capture(&self) {
        if self.shared.runtime.get().is_none() {
            if let Ok(runtime) = Handle::try_current() {
                let _ = self.shared.runtime.set(runtime);
            }
        }
    }

    /// Runs `work` to its end in the background: on the remembered
    /// runtime — where the backend's connections are driven, so a drop
    /// inside some short-lived runtime still reaches them — or else on the
    /// current one. Returns `false` if there is neither; the caller then
    /// says what lapses instead.
    #[must_use = "when no runtime is reachable, the caller must say what lapses instead"]
    pub fn spawn<F>(&self, work: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let runtime = self
            .shared
            .runtime
            .get()
            .cloned()
            .or_else(|| Handle::try_current().ok());
        match runtime {
            Some(runtime) => {
                self.shared.tasks.spawn_on(work, &runtime);
                true
            }
            None => false,
        }
    }

    /// Counts an operation running in its caller's task (an acquire, a
    /// release) as work [`settle`](Self::settle) waits for, until the
    /// returned value is dropped.
    pub fn in_flight(&self) -> InFlight {
        InFlight(self.shared.tasks.token())
    }

    /// Runs `operation` in the caller's task, counted as in flight (see
    /// [`in_flight`](Self::in_flight)) only if it does not finish at its
    /// first poll: a free memory lock costs no bookkeeping.
    pub async fn track<F: Future>(&self, operation: F) -> F::Output {
        let mut operation = std::pin::pin!(operation);
        // Declared after the operation, so dropped before it.
        let mut in_flight = None;
        std::future::poll_fn(|context| {
            let polled = operation.as_mut().poll(context);
            if polled.is_pending() {
                in_flight.get_or_insert_with(|| self.in_flight());
            }
            polled
        })
        .await
    }

    /// How many spawned tasks are still running.
    pub fn running(&self) -> usize {
        self.shared.tasks.len()
    }

    /// Waits until every spawned task has finished, for at most `within`;
    /// whether they all did.
    pub async fn settle(&self, within: Duration) -> bool {
        let tasks = &self.shared.tasks;
        tasks.close();
        let settled = tokio::time::timeout(within, tasks.wait()).await.is_ok();
        // Still usable afterwards: later work is tracked too.
        tasks.reopen();
        settled
    }
}

impl fmt::Debug for Background {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Background")
            .field("runtime", &self.shared.runtime.get().is_some())
            .field("running", &self.running())
            .finish()
    }
}

/// An operation [`Background::settle`] waits for; ends when dropped.
#[derive(Debug)]
#[must_use = "the operation counts as running only while this is held"]
pub struct InFlight(#[allow(dead_code)] TaskTrackerToken);
