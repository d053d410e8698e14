//! The registry of what one PostgreSQL client holds: per key, one entry
//! per owner, saying on which session; the names a try recently found held;
//! and whether the client was closed. Its own state only — it knows nothing
//! of the backend around it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use lockkit_core::OwnerToken;

use crate::session::Session;

/// How long a waiting acquire of a name this client recently found held
/// goes straight to the server's queue, skipping the try that would fail.
const CONTENTION_MEMORY: Duration = Duration::from_secs(1);

/// How many recently contended names are remembered before old ones are dropped.
const CONTENTION_NAMES: usize = 4096;

/// A key this client holds, or is trying for on a shared session.
pub(crate) struct Held {
    pub(crate) owner: OwnerToken,
    pub(crate) place: Place,
}

pub(crate) enum Place {
    /// A try-acquire is in flight on a shared session.
    Trying,
    /// Held on a shared session.
    Shared(Arc<Session>),
    /// Granted after waiting; held on the waiter connection that waited
    /// (the grant's handle keeps the connection itself).
    Waited(Arc<Session>),
}

impl Held {
    pub(crate) fn session(&self) -> Option<&Arc<Session>> {
        match &self.place {
            Place::Trying => None,
            Place::Shared(session) => Some(session),
            Place::Waited(session) => Some(session),
        }
    }

    /// Whether the entry still stands for a lock (or an attempt at one).
    pub(crate) fn is_live(&self) -> bool {
        self.session().is_none_or(|session| session.is_alive())
    }
}

/// What the client holds or is trying to take, and whether it was closed.
pub(crate) struct Registry {
    /// Every lock this client holds or is trying to take: per key, one
    /// entry per owner, each saying on which session. It must be exact under
    /// every interleaving of try, waited grant, release, cancellation and
    /// connection loss: PostgreSQL counts a session's locks on a key, so a
    /// try on a session that holds (or is trying for) the key would stack
    /// it, granting one name twice. A try is sent only while the key has no
    /// live entry at all; a waited grant adds its own entry and never
    /// replaces another's.
    held: Mutex<HashMap<i64, Vec<Held>>>,
    /// Keys a try recently found held, and when.
    contended: Mutex<HashMap<i64, Instant>>,
    /// Set at close, under the table's lock.
    closed: AtomicBool,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            held: Mutex::new(HashMap::new()),
            contended: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// Whether the client was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the client closed, under the table's lock, so no grant is
    /// recorded after close empties the table.
    pub(crate) fn close(&self) {
        let _table = self.table();
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn table(&self) -> MutexGuard<'_, HashMap<i64, Vec<Held>>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes `owner`'s entry for `key`, if there is one.
    pub(crate) fn forget(&self, key: i64, owner: &OwnerToken) -> Option<Held> {
        let mut table = self.table();
        let entries = table.get_mut(&key)?;
        let at = entries.iter().position(|held| held.owner == *owner)?;
        let held = entries.swap_remove(at);
        if entries.is_empty() {
            table.remove(&key);
        }
        Some(held)
    }

    /// Records a lock granted after waiting on `session`, beside any other
    /// entry; false (unrecorded) if the backend was closed.
    pub(crate) fn record_waited(
        &self,
        key: i64,
        owner: OwnerToken,
        session: &Arc<Session>,
    ) -> bool {
        let mut table = self.table();
        if self.is_closed() {
            return false;
        }
        table.entry(key).or_default().push(Held {
            owner,
            place: Place::Waited(Arc::clone(session)),
        });
        true
    }

    /// Moves `owner`'s try for `key` to `session`, which now holds it;
    /// false if the entry is gone (the backend was closed meanwhile).
    pub(crate) fn place_shared(
        &self,
        key: i64,
        owner: &OwnerToken,
        session: &Arc<Session>,
    ) -> bool {
        let mut table = self.table();
        if self.is_closed() {
            return false;
        }
        let entry = table
            .get_mut(&key)
            .and_then(|entries| entries.iter_mut().find(|held| held.owner == *owner));
        match entry {
            Some(held) => {
                held.place = Place::Shared(Arc::clone(session));
                true
            }
            None => false,
        }
    }

    /// Whether this client holds `key`, or is trying for it, on a live session.
    pub(crate) fn holds_live(&self, key: i64) -> bool {
        self.table()
            .get(&key)
            .is_some_and(|entries| entries.iter().any(Held::is_live))
    }

    /// How many waiter connections hold locks granted after waiting.
    pub(crate) fn pinned_waiters(&self) -> usize {
        self.table()
            .values()
            .flatten()
            .filter(|held| matches!(held.place, Place::Waited(_)) && held.is_live())
            .count()
    }

    /// Reserves `key` for `owner`'s try, unless this client holds it or is
    /// trying for it already (any owner, any session): then a try could
    /// reach a session that holds it and stack it. Entries of dead sessions
    /// are dropped on the way (their leases are Lost; their waiter
    /// connections go back when those leases end).
    pub(crate) fn reserve(&self, key: i64, owner: OwnerToken) -> bool {
        let mut table = self.table();
        // Under the table's lock: close empties the table after setting it.
        if self.is_closed() {
            return false;
        }
        let entries = table.entry(key).or_default();
        entries.retain(Held::is_live);
        let free = entries.is_empty();
        if free {
            entries.push(Held {
                owner,
                place: Place::Trying,
            });
        }
        free
    }

    /// Remembers that a try found `key` held.
    pub(crate) fn note_contended(&self, key: i64) {
        let mut contended = self
            .contended
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if contended.len() >= CONTENTION_NAMES {
            contended.retain(|_, seen| now.duration_since(*seen) < CONTENTION_MEMORY);
        }
        contended.insert(key, now);
    }

    /// Whether a try found `key` held within [`CONTENTION_MEMORY`].
    pub(crate) fn recently_contended(&self, key: i64) -> bool {
        let contended = self
            .contended
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        contended
            .get(&key)
            .is_some_and(|seen| seen.elapsed() < CONTENTION_MEMORY)
    }
}
