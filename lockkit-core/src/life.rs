//! A lock client's life, shared by a locker, its clones and its leases:
//! whether it was closed, the leases it holds now, and where their
//! drop-releases run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use slab::Slab;
use tokio_util::sync::CancellationToken;

use crate::background::Background;
use crate::error::{Error, ErrorKind};

/// What a locker and its clones share until [`Locker::close`]: whether it
/// is closed, the leases it holds, and where their drop-releases run.
pub(crate) struct Life<L> {
    /// Set by `close`: refuses later calls (one atomic load per acquire).
    closed: AtomicBool,
    /// Cancelled by `close`: wakes waiting acquires.
    pub(crate) closing: CancellationToken,
    /// The leases held now, so `close` can release them; `None` once
    /// closed. Sharded, so tasks acquiring at once rarely meet on one mutex.
    leases: [Mutex<Option<Slab<Weak<L>>>>; SHARDS],
    /// Where dropped leases are released; also counts acquires and
    /// releases in flight, which close waits for.
    pub(crate) background: Background,
    /// Done once: later and concurrent `close` calls wait for the first.
    pub(crate) close_once: tokio::sync::OnceCell<()>,
}

/// How many shards the table of held leases has.
const SHARDS: usize = 8;

/// A lease's place in its locker's table: (shard, index).
pub(crate) type Slot = (usize, usize);

impl<L> Life<L> {
    pub(crate) fn new() -> Self {
        Self {
            closed: AtomicBool::new(false),
            closing: CancellationToken::new(),
            leases: std::array::from_fn(|_| Mutex::new(Some(Slab::new()))),
            background: Background::new(),
            close_once: tokio::sync::OnceCell::new(),
        }
    }

    /// Whether `close` was called.
    pub(crate) fn closed(&self) -> bool {
        self.is_closed()
    }

    fn shard(&self, shard: usize) -> MutexGuard<'_, Option<Slab<Weak<L>>>> {
        // Each critical section is one slab operation: consistent even after a panic.
        self.leases[shard % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Records a new lease in `shard` (any number: a random one spreads
    /// them); `None` if the locker closed meanwhile.
    pub(crate) fn enter(&self, shard: usize, lease: Weak<L>) -> Option<Slot> {
        let shard = shard % SHARDS;
        self.shard(shard)
            .as_mut()
            .map(|leases| (shard, leases.insert(lease)))
    }

    /// Forgets an ended lease.
    pub(crate) fn leave(&self, (shard, index): Slot) {
        if let Some(leases) = self.shard(shard).as_mut() {
            leases.try_remove(index);
        }
    }

    /// Closes the table and returns the leases it held.
    pub(crate) fn take_leases(&self) -> Vec<Arc<L>> {
        self.closed.store(true, Ordering::Release);
        self.closing.cancel();
        (0..SHARDS)
            .filter_map(|shard| self.shard(shard).take())
            .flat_map(|leases| leases.into_iter().filter_map(|(_, lease)| lease.upgrade()))
            .collect()
    }

    pub(crate) fn closed_error(&self, backend: &'static str) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            backend,
            "this lock client was closed; connect a new one",
        )
        .with_retryable(false)
    }
}
