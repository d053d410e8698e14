//! Connections: the few shared sessions that hold locks, and bounded pools
//! of connections that block (waiters, transactions).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use lockkit_core::{Error, Result};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::BACKEND;
use crate::session::{Purpose, Session, Target};

/// One of the shared sessions: reconnected on first use after it died.
pub(crate) struct SharedSession {
    current: Mutex<Option<Arc<Session>>>,
    /// Set by close: no reconnecting afterwards.
    closed: AtomicBool,
    /// One reconnect at a time.
    reconnect: tokio::sync::Mutex<()>,
}

impl SharedSession {
    pub(crate) fn new(session: Option<Arc<Session>>) -> Self {
        Self {
            current: Mutex::new(session),
            closed: AtomicBool::new(false),
            reconnect: tokio::sync::Mutex::new(()),
        }
    }

    fn alive(&self) -> Option<Arc<Session>> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current
            .as_ref()
            .filter(|session| session.is_alive())
            .cloned()
    }

    /// The live session, connecting a new one if the last one died.
    pub(crate) async fn get(&self, target: &Target) -> Result<Arc<Session>> {
        if let Some(session) = self.alive() {
            return Ok(session);
        }
        let _turn = self.reconnect.lock().await;
        if let Some(session) = self.alive() {
            return Ok(session);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(target.closed());
        }
        let session = Session::connect(target, Purpose::Locks).await?;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&session));
        Ok(session)
    }

    /// Whether a live connection stands behind this session.
    pub(crate) fn is_connected(&self) -> bool {
        self.alive().is_some()
    }

    /// Ends the session (its leases are Lost) and forgets it.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let session = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(session) = session {
            session.end();
        }
    }
}

/// A bounded pool of connections, each used by one blocking operation at a time.
pub(crate) struct Pool {
    idle: Mutex<Vec<Arc<Session>>>,
    /// Every connection the pool opened, in use or idle, so close can end
    /// those still in use too.
    opened: Mutex<Vec<Weak<Session>>>,
    slots: Arc<Semaphore>,
    size: usize,
    /// What the connections are for, in errors (`waiter`, `transaction`).
    what: &'static str,
    purpose: Purpose,
}

/// A connection taken from a [`Pool`]; its slot is free again when dropped.
pub(crate) struct Pooled {
    pub(crate) session: Arc<Session>,
    _slot: OwnedSemaphorePermit,
}

impl Pool {
    pub(crate) fn new(size: usize, what: &'static str, purpose: Purpose) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            opened: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(size)),
            size,
            what,
            purpose,
        }
    }

    /// A slot for one connection: waits, in arrival order, while all are in
    /// use. Cancel-safe: dropped while waiting, it takes no place.
    pub(crate) async fn slot(&self, target: &Target) -> Result<OwnedSemaphorePermit> {
        Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| target.closed())
    }

    /// The connection for `slot`: an idle one, or a new one.
    pub(crate) async fn fill(&self, slot: OwnedSemaphorePermit, target: &Target) -> Result<Pooled> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            match idle {
                Some(session) if session.is_alive() => {
                    return Ok(Pooled {
                        session,
                        _slot: slot,
                    })
                }
                Some(_) => continue,
                None => break,
            }
        }
        let session = Session::connect(target, self.purpose)
            .await
            .map_err(|error| {
                let message = format!("{} (opening a {} connection)", error.message(), self.what);
                Error::new(error.kind(), BACKEND, message).with_source(error)
            })?;
        let mut opened = self.opened.lock().unwrap_or_else(PoisonError::into_inner);
        opened.retain(|session| session.strong_count() > 0);
        opened.push(Arc::downgrade(&session));
        drop(opened);
        Ok(Pooled {
            session,
            _slot: slot,
        })
    }

    /// Gives a connection back for reuse; a dead one is dropped.
    pub(crate) fn put(&self, pooled: Pooled) {
        if pooled.session.is_alive() && !self.slots.is_closed() {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Arc::clone(&pooled.session));
        }
    }

    /// How many connections the pool may hold.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Connections open: in use, plus idle ones still alive.
    pub(crate) fn open(&self) -> usize {
        let in_use = self.size.saturating_sub(self.slots.available_permits());
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        in_use + idle.iter().filter(|session| session.is_alive()).count()
    }

    /// Refuses new takers and closes every connection, idle or in use
    /// (an open locked transaction rolls back with it).
    pub(crate) fn close(&self) {
        self.slots.close();
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        drop(idle);
        let opened =
            std::mem::take(&mut *self.opened.lock().unwrap_or_else(PoisonError::into_inner));
        for session in opened.iter().filter_map(Weak::upgrade) {
            session.end();
        }
    }
}
