//! Waiting in the server's queue: an acquire that found its lock held
//! blocks in `pg_advisory_lock` on a waiter connection of its own, taken
//! from a bounded pool in arrival order, and gets the lock when PostgreSQL
//! grants it — FIFO, as the server queues. Cancelled, closed or past its
//! deadline, the wait withdraws from the queue.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockkit_core::{Background, Error, ErrorKind, Grant, Result, Undo, UndoStep, REPEAT_FOR};
use tokio::sync::watch;

use crate::error::{from_postgres, is_lock_timeout, BACKEND};
use crate::pool::{Pool, Pooled};
use crate::registry::Registry;
use crate::session::{Purpose, Target, Tls};

/// How long past an acquire's deadline the client waits for the server to
/// report its own `lock_timeout`, before giving up on a silent server.
const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// While every waiter connection is busy, a waiting acquire re-checks the
/// lock without one (a try needs none) after this pause, doubling up to
/// [`LAST_RECHECK`]: a client-side limit must never keep a free lock from
/// being granted.
const FIRST_RECHECK: Duration = Duration::from_millis(10);

/// The longest pause between those re-checks.
const LAST_RECHECK: Duration = Duration::from_millis(200);

/// The waiter connections, and the signal that ends every wait at close.
pub(crate) struct Queue {
    /// Connections blocked in `pg_advisory_lock`, then holding what they got.
    waiters: Pool,
    /// Turns true at close: ends acquires waiting in the server's queue.
    closing: watch::Sender<bool>,
}

/// What a wait works with that is not its own: where it connects, where
/// its withdrawal runs, and what the client holds (for its messages).
#[derive(Clone, Copy)]
pub(crate) struct Around<'a> {
    pub(crate) target: &'a Target,
    pub(crate) background: &'a Background,
    pub(crate) registry: &'a Registry,
}

/// What one re-check found, while the wait had no waiter connection yet.
pub(crate) enum Recheck {
    /// Not tried: this client holds the key, or is trying for it, already.
    Skipped,
    /// Tried: held by someone else.
    Held,
    /// Tried, and granted on a shared session.
    Granted(Grant),
}

/// How a wait ended in a grant.
pub(crate) enum Waited {
    /// A re-check found the lock free and took it on a shared session.
    Rechecked(Grant),
    /// The server's queue granted it to this waiter connection, which now
    /// holds it: the fencing sequence's value, and the connection.
    Queued { token: i64, pooled: Pooled },
}

impl Queue {
    /// Up to `size` waits in the server's queue at once.
    pub(crate) fn new(size: usize) -> Self {
        Self {
            waiters: Pool::new(size, "waiter", Purpose::Locks),
            closing: watch::Sender::new(false),
        }
    }

    /// Ends every wait: each withdraws from the server's queue in the background.
    pub(crate) fn end_waits(&self) {
        self.closing.send_replace(true);
    }

    /// Closes every waiter connection, those holding locks too.
    pub(crate) fn close(&self) {
        self.waiters.close();
    }

    /// How many waiter connections are open.
    pub(crate) fn open(&self) -> usize {
        self.waiters.open()
    }

    /// Gives a waiter connection back once the lock it held is released.
    pub(crate) fn put(&self, pooled: Pooled) {
        self.waiters.put(pooled);
    }

    /// Waits for `key` in the server's queue on a waiter connection.
    ///
    /// While every waiter connection is busy it keeps its place in line for
    /// one and meanwhile checks, by `recheck` (a try on a shared session,
    /// which needs no waiter connection), whether the lock came free — a
    /// client-side limit never looks like contention and never keeps a free
    /// lock from being granted. Closing the queue ends the wait.
    pub(crate) async fn wait<R, F>(
        &self,
        around: Around<'_>,
        key: i64,
        name: &str,
        deadline: Option<Instant>,
        mut recheck: R,
    ) -> Result<Waited>
    where
        R: FnMut() -> F,
        F: Future<Output = Result<Recheck>>,
    {
        let Around {
            target,
            background,
            registry,
        } = around;
        let timeout =
            || Error::timeout(BACKEND, "acquire", name, "its holder kept it").at(&target.server);
        let mut closing = self.closing.subscribe();
        let closed = async move {
            let _ = closing.wait_for(|closed| *closed).await;
        };
        tokio::pin!(closed);
        // Created once: it keeps this acquire's place in the FIFO line for a
        // waiter connection across the re-checks.
        let slot = self.waiters.slot(target);
        tokio::pin!(slot);
        let mut rechecks = 0;
        let mut pause = FIRST_RECHECK;
        let slot = loop {
            let until = Instant::now() + pause;
            let wake = deadline.map_or(until, |deadline| deadline.min(until));
            tokio::select! {
                biased;
                slot = &mut slot => break slot?,
                () = &mut closed => return Err(target.closed()),
                () = tokio::time::sleep_until(wake.into()) => {}
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Err(self.no_waiter_connection(target, registry, key, name, rechecks));
            }
            match recheck().await? {
                Recheck::Granted(grant) => return Ok(Waited::Rechecked(grant)),
                Recheck::Held => rechecks += 1,
                Recheck::Skipped => {}
            }
            pause = (pause * 2).min(LAST_RECHECK);
        };
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(timeout());
        }
        let fill = self.waiters.fill(slot, target);
        let pooled = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), fill)
                .await
                .map_err(|_| {
                    Error::new(
                        ErrorKind::Timeout,
                        BACKEND,
                        format!(
                            "{}: opening a waiter connection for lock `{name}` took past the \
                             acquire's deadline (the lock was never waited for)",
                            target.server
                        ),
                    )
                })??,
            None => fill.await?,
        };
        let mut pooled = pooled;
        loop {
            let left = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
            if left.is_some_and(|left| left < Duration::from_millis(1)) {
                self.waiters.put(pooled);
                return Err(timeout());
            }
            // Until the outcome is in hand, a cancelled acquire (or a silent
            // server past the deadline, or close) withdraws from the queue in
            // the background.
            let session = Arc::clone(&pooled.session);
            let waiting = withdraw(background, target, key, pooled);
            let lock = session.lock(key, left);
            let give_up = deadline.and_then(|deadline| deadline.checked_add(DEADLINE_GRACE));
            let silent = async {
                match give_up {
                    Some(give_up) => tokio::time::sleep_until(give_up.into()).await,
                    None => std::future::pending().await,
                }
            };
            let outcome = tokio::select! {
                outcome = lock => outcome,
                () = silent => return Err(timeout()),
                () = &mut closed => return Err(target.closed()),
            };
            pooled = waiting.disarm().1;
            match outcome {
                Ok(token) => return Ok(Waited::Queued { token, pooled }),
                Err(error) if is_lock_timeout(&error) => {
                    // PostgreSQL can report lock_timeout for a lock it
                    // granted in the same instant (DistributedLock met
                    // this): make sure the connection does not keep the key
                    // before reusing it, or the next wait on it would stack
                    // on a lock nobody owns.
                    match pooled.session.unlock(key).await {
                        Ok(true) => {
                            tracing::debug!(
                                lock = name,
                                "lock_timeout reported for a granted lock; released it"
                            );
                        }
                        Ok(false) => {}
                        Err(_) => {
                            pooled.session.end();
                            return Err(timeout());
                        }
                    }
                    // lock_timeout stops at about 24.8 days
                    // (MAX_LOCK_TIMEOUT): a longer wait goes on; the loop's
                    // first check ends it at the deadline.
                }
                Err(error) => {
                    // Not sure what the connection holds: drop it, and any lock with it.
                    pooled.session.end();
                    return Err(from_postgres(
                        &target.server,
                        format!("wait for `{name}`"),
                        error,
                    ));
                }
            }
        }
    }

    /// The deadline passed while every waiter connection was busy: say
    /// which limit was in the way, and what the re-checks saw.
    fn no_waiter_connection(
        &self,
        target: &Target,
        registry: &Registry,
        key: i64,
        name: &str,
        rechecks: usize,
    ) -> Error {
        let seen = match rechecks {
            _ if registry.holds_live(key) => {
                "this client itself holds it, for another of its leases".to_owned()
            }
            0 => "the deadline came before any re-check".to_owned(),
            checks => format!("it was held at each of {checks} re-checks without one"),
        };
        Error::new(
            ErrorKind::Timeout,
            BACKEND,
            format!(
                "{}: lock `{name}` was not granted by the acquire's deadline ({seen}). It never \
                 got a waiter connection: all max_waiters = {} were busy, {} of them holding a \
                 lock granted after waiting (such a lock keeps its connection until released). \
                 Raise [postgres] max_waiters, or release those locks sooner",
                target.server,
                self.waiters.size(),
                registry.pinned_waiters(),
            ),
        )
    }
}

/// A wait in the server's queue: where to send its cancel, and its connection.
type Waiting = (Tls, Pooled);

/// The undo of a wait in the server's queue until its outcome is in hand
/// (a cancelled acquire, a silent server past the deadline, close): cancels
/// the wait and unlocks what it may have been granted meanwhile, then ends
/// the waiter connection. Without a runtime, ending the connection ends the
/// wait and any grant.
fn withdraw<'a>(
    background: &'a Background,
    target: &Target,
    key: i64,
    pooled: Pooled,
) -> Undo<'a, Waiting, impl UndoStep<Waiting>, impl FnOnce(Waiting)> {
    Undo::new(
        background,
        (target.tls.clone(), pooled),
        move |(tls, pooled): Waiting| {
            async move {
                let session = Arc::clone(&pooled.session);
                // Queued behind the wait on the same connection, the unlock runs
                // once the wait ends, granted or cancelled.
                let unlock = session.unlock(key);
                tokio::pin!(unlock);
                // A cancel that reached the server before the wait began is
                // lost: ask again until the wait has ended, for a bounded time.
                let give_up = Instant::now() + REPEAT_FOR;
                loop {
                    session.cancel(tls.clone()).await;
                    tokio::select! {
                        _ = &mut unlock => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    if Instant::now() >= give_up {
                        tracing::warn!(
                            lock_key = key,
                            "a cancelled wait did not end; closing its connection"
                        );
                        break;
                    }
                }
                // Never reused: a cancel request reaches the server on its own
                // connection, and one that arrives late would cancel whatever
                // runs next on this one — another acquire's wait, or a release.
                // Ending the connection also frees the lock if the unlock failed.
                pooled.session.end();
            }
        },
        |(_, pooled): Waiting| pooled.session.end(),
    )
}
