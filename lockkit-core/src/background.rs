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
        match self.runtime() {
            Some(runtime) => {
                self.shared.tasks.spawn_on(work, &runtime);
                true
            }
            None => false,
        }
    }

    /// The runtime background work runs on: the remembered one, or else the
    /// current one.
    fn runtime(&self) -> Option<Handle> {
        self.shared
            .runtime
            .get()
            .cloned()
            .or_else(|| Handle::try_current().ok())
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

/// How to undo a step that is under way, if the future doing it is dropped
/// (cancelled) or gives up before the step is done: the one clean-up guard
/// every backend uses for cancel safety.
///
/// It holds the `state` the undo needs. [`disarm`](Self::disarm) on success
/// hands the state back and nothing runs. Dropped while armed, it runs the
/// async `undo` to its end on its [`Background`] — the runtime the backend's
/// connections live on, reachable from any thread — or, where no runtime is
/// reachable, the synchronous `without_runtime` part (close a connection,
/// say what lapses at its TTL or session end).
///
/// ```
/// # use lockkit_core::{Background, Undo};
/// # async fn send_grant() -> Result<(), ()> { Ok(()) }
/// # async fn give_back(node: String) {}
/// # async fn acquire(background: &Background) -> Result<(), ()> {
/// let undo = Undo::new(
///     background,
///     "/locks/billing/_c_1-lock-0000000007".to_owned(),
///     |node| give_back(node),
///     |node| tracing::warn!(node, "no runtime: the node goes with the session"),
/// );
/// send_grant().await?; // dropped or failed here: the node is given back
/// let _node = undo.disarm(); // granted: keep it
/// # Ok(()) }
/// ```
#[must_use = "dropping the guard runs the undo at once"]
pub struct Undo<'a, T, A, S>
where
    A: UndoStep<T>,
    S: FnOnce(T),
{
    background: &'a Background,
    armed: Option<(T, A, S)>,
}

/// The async part of an [`Undo`]: a function of its state that returns the
/// work to run in the background.
pub trait UndoStep<T> {
    /// The work, run to its end.
    type Work: Future<Output = ()> + Send + 'static;
    /// Makes the work from the state.
    fn work(self, state: T) -> Self::Work;
}

impl<T, F, W> UndoStep<T> for F
where
    F: FnOnce(T) -> W,
    W: Future<Output = ()> + Send + 'static,
{
    type Work = W;

    fn work(self, state: T) -> W {
        self(state)
    }
}

impl<'a, T, A, S> Undo<'a, T, A, S>
where
    A: UndoStep<T>,
    S: FnOnce(T),
{
    /// An armed guard: dropped before [`disarm`](Self::disarm), it runs
    /// `undo(state)` on `background`, or `without_runtime(state)` where no
    /// runtime is reachable.
    pub fn new(background: &'a Background, state: T, undo: A, without_runtime: S) -> Self {
        Self {
            background,
            armed: Some((state, undo, without_runtime)),
        }
    }

    /// The step is done: nothing is undone, and the state comes back.
    pub fn disarm(mut self) -> T {
        match self.armed.take() {
            Some((state, _, _)) => state,
            // `disarm` takes the guard by value and `drop` is the only other
            // place that empties it.
            None => unreachable!("an Undo is armed until disarmed or dropped"),
        }
    }
}

impl<T, A, S> Drop for Undo<'_, T, A, S>
where
    A: UndoStep<T>,
    S: FnOnce(T),
{
    fn drop(&mut self) {
        let Some((state, undo, without_runtime)) = self.armed.take() else {
            return;
        };
        match self.background.runtime() {
            Some(runtime) => {
                self.background
                    .shared
                    .tasks
                    .spawn_on(undo.work(state), &runtime);
            }
            None => without_runtime(state),
        }
    }
}

impl<T: fmt::Debug, A, S> fmt::Debug for Undo<'_, T, A, S>
where
    A: UndoStep<T>,
    S: FnOnce(T),
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Undo")
            .field("armed", &self.armed.as_ref().map(|(state, _, _)| state))
            .finish()
    }
}

/// An operation [`Background::settle`] waits for; ends when dropped.
#[derive(Debug)]
#[must_use = "the operation counts as running only while this is held"]
pub struct InFlight(#[allow(dead_code)] TaskTrackerToken);

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    type Runs = Arc<(AtomicUsize, AtomicUsize)>;

    /// Counts the undo's async runs and its runs without a runtime.
    fn counted<'a>(
        background: &'a Background,
        ran: &Runs,
    ) -> Undo<'a, Runs, impl UndoStep<Runs>, impl FnOnce(Runs)> {
        Undo::new(
            background,
            Arc::clone(ran),
            |ran: Runs| async move {
                ran.0.fetch_add(1, Ordering::SeqCst);
            },
            |ran: Runs| {
                ran.1.fetch_add(1, Ordering::SeqCst);
            },
        )
    }

    #[tokio::test]
    async fn a_disarmed_undo_runs_nothing_and_gives_its_state_back() {
        let background = Background::new();
        let ran = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let state = counted(&background, &ran).disarm();
        assert!(Arc::ptr_eq(&state, &ran));
        assert!(background.settle(Duration::from_secs(5)).await);
        assert_eq!(ran.0.load(Ordering::SeqCst), 0);
        assert_eq!(ran.1.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_dropped_undo_runs_its_work_on_the_background() {
        let background = Background::new();
        let ran = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        drop(counted(&background, &ran));
        assert!(background.settle(Duration::from_secs(5)).await);
        assert_eq!(ran.0.load(Ordering::SeqCst), 1);
        assert_eq!(ran.1.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn without_a_runtime_a_dropped_undo_runs_its_synchronous_part() {
        let background = Background::new();
        let ran = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        drop(counted(&background, &ran));
        assert_eq!(ran.0.load(Ordering::SeqCst), 0);
        assert_eq!(ran.1.load(Ordering::SeqCst), 1);
    }
}
