//! The link between a session backend's sessions and the leases granted on them.
//!
//! A session backend (PostgreSQL, ZooKeeper) holds its locks for as long as a
//! connection or session lives. It keeps one [`SessionSignal`] per session
//! and hands a [`SessionWatch`] of it out with each [`Grant`](crate::Grant);
//! every lease granted on the session then turns Uncertain while the session
//! is suspended and Lost the moment it ends, without polling.

use tokio::sync::watch;

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

/// The backend's side of one session: it reports the session's health.
///
/// Dropping the signal ends the session for every watcher.
#[derive(Debug)]
pub struct SessionSignal {
    health: watch::Sender<SessionHealth>,
}

impl SessionSignal {
    /// A signal for a session that is alive now.
    pub fn new() -> Self {
        Self {
            health: watch::Sender::new(SessionHealth::Alive),
        }
    }

    /// A watch for a grant made on this session.
    pub fn watch(&self) -> SessionWatch {
        SessionWatch {
            health: self.health.subscribe(),
        }
    }

    /// Reports the session's health. An ended session stays ended: a lease
    /// that saw `Lost` never sees `Held` again.
    pub fn set(&self, health: SessionHealth) {
        self.health.send_if_modified(|current| {
            let changes = *current != health && *current != SessionHealth::Ended;
            if changes {
                *current = health;
            }
            changes
        });
    }

    /// Ends the session: every lease granted on it is Lost.
    pub fn end(&self) {
        self.set(SessionHealth::Ended);
    }

    /// The session's health now.
    pub fn health(&self) -> SessionHealth {
        *self.health.borrow()
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
    health: watch::Receiver<SessionHealth>,
}

impl SessionWatch {
    /// The session's health now.
    pub fn health(&self) -> SessionHealth {
        *self.health.borrow()
    }

    /// Resolves when the session's health may have changed (at once if its
    /// signal is gone: the session has ended).
    pub(crate) async fn changed(&mut self) {
        if self.health.changed().await.is_err() {
            // The sender ended the session before it went; nothing more will come.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::backend::{Claim, Grant};
    use crate::lease::{Lease, LeaseState};
    use crate::locker::Life;
    use crate::telemetry::Instruments;
    use crate::{FencingToken, LockName, MemoryBackend, OwnerToken};

    /// A lease on a session, as a session backend would start it.
    async fn session_lease(signal: &SessionSignal) -> Lease {
        let claim = Claim {
            name: LockName::new("session-test").unwrap(),
            owner: OwnerToken::generate().unwrap(),
            token: FencingToken::new(1).unwrap(),
        };
        let grant = Grant {
            token: claim.token,
            valid_until: None,
            contended: false,
            session: Some(signal.watch()),
        };
        Lease::start(
            Arc::new(MemoryBackend::new()),
            claim,
            grant,
            Instant::now(),
            Arc::new(Instruments::new("memory")),
            Arc::new(Life::new()),
            None,
        )
        .await
        .expect("the locker is open")
    }

    #[tokio::test]
    async fn suspension_makes_leases_uncertain_and_recovery_held_again() {
        let signal = SessionSignal::new();
        let lease = session_lease(&signal).await;
        assert_eq!(lease.state(), LeaseState::Held);
        let noticed = tokio::spawn({
            let view = lease.view();
            async move { view.not_held().await }
        });
        signal.set(SessionHealth::Suspended);
        let seen = tokio::time::timeout(Duration::from_secs(1), noticed).await;
        assert_eq!(seen.unwrap().unwrap(), LeaseState::Uncertain);
        signal.set(SessionHealth::Alive);
        assert_eq!(lease.state(), LeaseState::Held);
    }

    #[tokio::test]
    async fn session_end_loses_every_lease_for_good() {
        let signal = SessionSignal::new();
        let (first, second) = (session_lease(&signal).await, session_lease(&signal).await);
        let lost = tokio::spawn({
            let view = first.view();
            async move { view.lost().await }
        });
        tokio::task::yield_now().await;
        signal.end();
        let seen = tokio::time::timeout(Duration::from_secs(1), lost).await;
        assert_eq!(seen.unwrap().unwrap(), LeaseState::Lost);
        assert_eq!(second.state(), LeaseState::Lost);
        signal.set(SessionHealth::Alive);
        assert_eq!(
            first.state(),
            LeaseState::Lost,
            "an ended session came back"
        );
        assert_eq!(signal.health(), SessionHealth::Ended);
    }

    #[tokio::test]
    async fn a_dropped_signal_ends_its_session() {
        let signal = SessionSignal::new();
        let lease = session_lease(&signal).await;
        drop(signal);
        let seen = tokio::time::timeout(Duration::from_secs(1), lease.lost()).await;
        assert_eq!(seen, Ok(LeaseState::Lost));
    }
}
