//! The link between a session backend's sessions and the leases granted on them.
//!
//! A session backend (PostgreSQL, ZooKeeper, etcd) holds its locks for as
//! long as a connection or session lives. It keeps one [`SessionSignal`] per
//! session, and may keep one per grant as well, where a grant can end
//! alone (an etcd key deleted); it puts a [`SessionWatch`] of each into the
//! grant's [`watches`](crate::Grant::watches). Every lease granted on them
//! then turns Uncertain while one is suspended and Lost the moment one
//! ends, without polling.
//!
//! A session the server expires after a timeout is alive only *provably
//! until* an instant: the send instant of the last confirmed heartbeat plus
//! the server's session or lease timeout, minus the drift allowance. The
//! backend reports it with [`SessionSignal::confirm`]; a lease applies the
//! earlier of its own bound and its session's, and turns Lost when that
//! passes without a new confirmation — by itself, whether or not the
//! backend notices in time to call [`end`](SessionSignal::end).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// How a backend session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionHealth {
    /// Connected: its locks are held.
    Alive,
    /// Disconnected but possibly recoverable (a ZooKeeper session between
    /// servers): its leases are Uncertain.
    Suspended,
    /// Gone, and its locks with it. Final.
    Ended,
}

/// How a session stands, and until when it is provably alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionStatus {
    /// Alive, suspended or ended.
    pub health: SessionHealth,
    /// Until when the session is certainly alive at the server; `None` for
    /// a session the server never times out on its own (a PostgreSQL
    /// connection lives until it closes).
    pub valid_until: Option<Instant>,
}

/// The backend's side of one session: it reports the session's health and,
/// for a session with a server-side timeout, until when it is provably alive.
///
/// Dropping the signal ends the session for every watcher.
#[derive(Debug)]
pub struct SessionSignal {
    status: watch::Sender<SessionStatus>,
}

impl SessionSignal {
    /// A signal for a session that is alive now, with no time bound (the
    /// server keeps it until it closes).
    pub fn new() -> Self {
        Self::with(None)
    }

    /// A signal for a session that is alive now and provably so until
    /// `valid_until` (see [`confirm`](Self::confirm)).
    pub fn alive_until(valid_until: Instant) -> Self {
        Self::with(Some(valid_until))
    }

    fn with(valid_until: Option<Instant>) -> Self {
        Self {
            status: watch::Sender::new(SessionStatus {
                health: SessionHealth::Alive,
                valid_until,
            }),
        }
    }

    /// A watch for a grant made on this session.
    pub fn watch(&self) -> SessionWatch {
        SessionWatch {
            status: self.status.subscribe(),
        }
    }

    /// Reports the session's health, keeping its bound. An ended session
    /// stays ended: a lease that saw `Lost` never sees `Held` again.
    pub fn set(&self, health: SessionHealth) {
        self.update(|status| status.health = health);
    }

    /// A heartbeat sent at some instant was confirmed: the session is alive
    /// and provably so until `valid_until` — that send instant plus the
    /// server's session or lease timeout, minus the drift allowance. Has no
    /// effect on an ended session.
    pub fn confirm(&self, valid_until: Instant) {
        self.update(|status| {
            status.health = SessionHealth::Alive;
            status.valid_until = Some(valid_until);
        });
    }

    fn update(&self, change: impl FnOnce(&mut SessionStatus)) {
        self.status.send_if_modified(|current| {
            if current.health == SessionHealth::Ended {
                return false;
            }
            if current
                .valid_until
                .is_some_and(|bound| Instant::now() >= bound)
            {
                // Its bound passed unconfirmed: the server may have expired
                // it, and its leases reported Lost. A late confirmation does
                // not bring them back: the session has ended.
                current.health = SessionHealth::Ended;
                return true;
            }
            let before = *current;
            change(current);
            *current != before
        });
    }

    /// Ends the session: every lease granted on it is Lost.
    pub fn end(&self) {
        self.set(SessionHealth::Ended);
    }

    /// The session's health now.
    pub fn health(&self) -> SessionHealth {
        self.status.borrow().health
    }

    /// The session's health and bound now.
    pub fn status(&self) -> SessionStatus {
        *self.status.borrow()
    }
}

impl Default for SessionSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SessionSignal {
    fn drop(&mut self) {
        self.end();
    }
}

/// A grant's view of the session it was made on.
#[derive(Debug, Clone)]
pub struct SessionWatch {
    status: watch::Receiver<SessionStatus>,
}

impl SessionWatch {
    /// The session's health now.
    pub fn health(&self) -> SessionHealth {
        self.status.borrow().health
    }

    /// Until when the session is provably alive, if it has a bound.
    pub fn valid_until(&self) -> Option<Instant> {
        self.status.borrow().valid_until
    }

    /// The session's health and bound now.
    pub fn status(&self) -> SessionStatus {
        *self.status.borrow()
    }

    /// Resolves when the session's status may have changed (at once if its
    /// signal is gone: the session has ended).
    pub(crate) async fn changed(&mut self) {
        if self.status.changed().await.is_err() {
            // The sender ended the session before it went; nothing more will come.
            std::future::pending::<()>().await;
        }
    }
}

/// The allowance for the server's clock running faster than ours,
/// subtracted from every bound a session timeout gives: 1 % of the timeout
/// plus 10 ms.
pub fn session_drift(timeout: Duration) -> Duration {
    timeout / 100 + Duration::from_millis(10)
}

/// A session with a server-side timeout, kept alive by a task of the
/// backend's (heartbeats, keep-alives): its [`SessionSignal`], that task,
/// and a heartbeat on demand. What an etcd session lease and a ZooKeeper
/// session share; each backend's own task does the talking.
#[derive(Debug)]
pub struct KeptSession {
    signal: SessionSignal,
    keeper: Mutex<Option<JoinHandle<()>>>,
    /// Asks the keeper for a heartbeat now.
    asked: Notify,
    /// Told after every confirmed heartbeat.
    confirmed: Notify,
}

impl KeptSession {
    /// A session alive now and provably so until `valid_until`.
    pub fn alive_until(valid_until: Instant) -> Self {
        Self {
            signal: SessionSignal::alive_until(valid_until),
            keeper: Mutex::new(None),
            asked: Notify::new(),
            confirmed: Notify::new(),
        }
    }

    /// Hands the session to the task that keeps it; [`end`](Self::end)
    /// stops that task.
    pub fn kept_by(&self, keeper: JoinHandle<()>) {
        if let Some(old) = self
            .keeper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(keeper)
        {
            old.abort();
        }
    }

    /// The session's signal, for the keeper to report what it sees.
    pub fn signal(&self) -> &SessionSignal {
        &self.signal
    }

    /// A watch for a grant made on this session.
    pub fn watch(&self) -> SessionWatch {
        self.signal.watch()
    }

    /// Whether the session has ended: told so, or its bound passed
    /// unconfirmed.
    pub fn is_ended(&self) -> bool {
        let status = self.signal.status();
        status.health == SessionHealth::Ended
            || status
                .valid_until
                .is_some_and(|bound| Instant::now() >= bound)
    }

    /// Until when the session is provably alive at the server.
    pub fn valid_until(&self) -> Option<Instant> {
        self.signal.status().valid_until
    }

    /// Asks the keeper for a heartbeat now and waits up to `within` for its
    /// answer; returns the bound then (moved if it was answered).
    pub async fn refresh(&self, within: Duration) -> Option<Instant> {
        let confirmed = self.confirmed.notified();
        tokio::pin!(confirmed);
        confirmed.as_mut().enable();
        self.asked.notify_one();
        let _ = tokio::time::timeout(within, confirmed).await;
        self.valid_until()
    }

    /// For the keeper: resolves when [`refresh`](Self::refresh) asks for a
    /// heartbeat.
    pub async fn asked(&self) {
        self.asked.notified().await;
    }

    /// For the keeper: a heartbeat sent at `sent` was answered, with the
    /// session's `timeout` at the server — it is provably alive until then
    /// plus the timeout, minus the [`session_drift`].
    pub fn confirm(&self, sent: Instant, timeout: Duration) {
        self.signal
            .confirm(sent + timeout.saturating_sub(session_drift(timeout)));
        self.confirmed.notify_waiters();
    }

    /// The session is gone: every lease on it is Lost, for good, and the
    /// keeper stops.
    pub fn end(&self) {
        self.signal.end();
        self.stop_keeping();
    }

    /// Stops the keeper, leaving the signal as it is.
    pub fn stop_keeping(&self) {
        if let Some(keeper) = self
            .keeper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            keeper.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::lease::tests::{started, Started};
    use crate::lease::LeaseState;

    type Outcome = std::result::Result<(), Box<dyn std::error::Error>>;

    /// A lease on a session, as a session backend would start it.
    async fn session_lease(signal: &SessionSignal) -> Started {
        started(None, Some(signal.watch())).await
    }

    #[tokio::test]
    async fn suspension_makes_leases_uncertain_and_recovery_held_again() -> Outcome {
        let signal = SessionSignal::new();
        let lease = session_lease(&signal).await?;
        assert_eq!(lease.state(), LeaseState::Held);
        let noticed = tokio::spawn({
            let view = lease.view();
            async move { view.not_held().await }
        });
        signal.set(SessionHealth::Suspended);
        let seen = tokio::time::timeout(Duration::from_secs(1), noticed).await;
        assert_eq!(seen??, LeaseState::Uncertain);
        signal.set(SessionHealth::Alive);
        assert_eq!(lease.state(), LeaseState::Held);
        Ok(())
    }

    #[tokio::test]
    async fn session_end_loses_every_lease_for_good() -> Outcome {
        let signal = SessionSignal::new();
        let (first, second) = (session_lease(&signal).await?, session_lease(&signal).await?);
        let lost = tokio::spawn({
            let view = first.view();
            async move { view.lost().await }
        });
        tokio::task::yield_now().await;
        signal.end();
        let seen = tokio::time::timeout(Duration::from_secs(1), lost).await;
        assert_eq!(seen??, LeaseState::Lost);
        assert_eq!(second.state(), LeaseState::Lost);
        signal.set(SessionHealth::Alive);
        assert_eq!(
            first.state(),
            LeaseState::Lost,
            "an ended session came back"
        );
        assert_eq!(signal.health(), SessionHealth::Ended);
        Ok(())
    }

    /// A lease with its own bound `own` on the session of `signal`.
    async fn bounded_lease(signal: &SessionSignal, own: Option<Instant>) -> Started {
        started(own, Some(signal.watch())).await
    }

    #[tokio::test]
    async fn a_session_lease_is_lost_at_its_session_bound_by_itself() -> Outcome {
        let bound = Instant::now() + Duration::from_millis(150);
        let signal = SessionSignal::alive_until(bound);
        let lease = bounded_lease(&signal, None).await?;
        assert_eq!(lease.state(), LeaseState::Held);
        assert_eq!(lease.valid_until(), Some(bound));
        // Nobody calls end(): the bound alone ends the lease.
        let seen = tokio::time::timeout(Duration::from_secs(2), lease.lost()).await?;
        assert_eq!(seen, LeaseState::Lost);
        assert!(Instant::now() >= bound, "lost before the session's bound");
        // A confirmation that comes too late does not bring it back.
        signal.confirm(Instant::now() + Duration::from_secs(60));
        assert_eq!(lease.state(), LeaseState::Lost);
        assert_eq!(signal.health(), SessionHealth::Ended);
        Ok(())
    }

    #[tokio::test]
    async fn a_confirmation_moves_the_session_bound() -> Outcome {
        let signal = SessionSignal::alive_until(Instant::now() + Duration::from_millis(100));
        let lease = bounded_lease(&signal, None).await?;
        let later = Instant::now() + Duration::from_secs(60);
        signal.confirm(later);
        assert_eq!(lease.valid_until(), Some(later));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(lease.state(), LeaseState::Held);
        Ok(())
    }

    #[tokio::test]
    async fn the_earlier_of_the_lease_and_session_bounds_applies() -> Outcome {
        let (soon, late) = (
            Instant::now() + Duration::from_secs(30),
            Instant::now() + Duration::from_secs(60),
        );
        let session_first = SessionSignal::alive_until(soon);
        let lease = bounded_lease(&session_first, Some(late)).await?;
        assert_eq!(lease.valid_until(), Some(soon));
        let own_first = SessionSignal::alive_until(late);
        let lease = bounded_lease(&own_first, Some(soon)).await?;
        assert_eq!(lease.valid_until(), Some(soon));
        let unbounded = SessionSignal::new();
        let lease = bounded_lease(&unbounded, None).await?;
        assert_eq!(lease.valid_until(), None);
        Ok(())
    }

    #[tokio::test]
    async fn a_grant_signal_and_its_session_both_apply() -> Outcome {
        let (session, grant) = (
            SessionSignal::alive_until(Instant::now() + Duration::from_secs(60)),
            SessionSignal::alive_until(Instant::now() + Duration::from_secs(30)),
        );
        let lease = started(None, [session.watch(), grant.watch()]).await?;
        assert_eq!(lease.valid_until(), grant.status().valid_until);
        session.set(SessionHealth::Suspended);
        assert_eq!(lease.state(), LeaseState::Uncertain);
        session.set(SessionHealth::Alive);
        assert_eq!(lease.state(), LeaseState::Held);
        // The grant's own signal ends it (its etcd key was deleted) while
        // the session lives on.
        let lost = tokio::spawn({
            let view = lease.view();
            async move { view.lost().await }
        });
        tokio::task::yield_now().await;
        grant.end();
        let seen = tokio::time::timeout(Duration::from_secs(1), lost).await;
        assert_eq!(seen??, LeaseState::Lost);
        assert_eq!(session.health(), SessionHealth::Alive);
        Ok(())
    }

    #[tokio::test]
    async fn a_kept_session_is_confirmed_on_demand_and_its_keeper_stops_at_the_end() -> Outcome {
        let kept = std::sync::Arc::new(KeptSession::alive_until(
            Instant::now() + Duration::from_secs(1),
        ));
        let timeout = Duration::from_secs(60);
        let keeper = tokio::spawn({
            let kept = std::sync::Arc::clone(&kept);
            async move {
                loop {
                    kept.asked().await;
                    kept.confirm(Instant::now(), timeout);
                }
            }
        });
        kept.kept_by(keeper);
        let asked = Instant::now();
        let bound = kept.refresh(Duration::from_secs(5)).await;
        assert!(
            bound.is_some_and(|bound| bound >= asked + timeout - session_drift(timeout)),
            "the heartbeat asked for did not move the bound: {bound:?}"
        );
        assert!(!kept.is_ended());
        kept.end();
        assert!(kept.is_ended());
        // The keeper, aborted, lets go of its clone.
        tokio::time::timeout(Duration::from_secs(1), async {
            while std::sync::Arc::strong_count(&kept) > 1 {
                tokio::task::yield_now().await;
            }
        })
        .await?;
        Ok(())
    }

    #[tokio::test]
    async fn a_dropped_signal_ends_its_session() -> Outcome {
        let signal = SessionSignal::new();
        let lease = session_lease(&signal).await?;
        drop(signal);
        let seen = tokio::time::timeout(Duration::from_secs(1), lease.lost()).await;
        assert_eq!(seen, Ok(LeaseState::Lost));
        Ok(())
    }
}
