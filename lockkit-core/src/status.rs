//! What can be read of a lock without taking it: free, or who holds it.

use std::time::{Duration, SystemTime};

use crate::fence::FencingToken;

/// A lock's state as the server sees it at one instant, read by
/// [`Locker::status`](crate::Locker::status) without taking the lock.
///
/// A snapshot, not a promise: the lock may change hands the moment after it
/// is read. Use it to diagnose a stuck lock or to report; decide who may
/// work only by acquiring.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockStatus {
    /// Nobody holds the lock (waiters may still be queued for it).
    Free,
    /// Someone holds it — this client or another.
    Held(Holder),
}

impl LockStatus {
    /// The holder, if the lock is held.
    pub fn holder(&self) -> Option<&Holder> {
        match self {
            Self::Free => None,
            Self::Held(holder) => Some(holder),
        }
    }
}

/// What the server keeps of a lock's current holder. Each field is what the
/// backend can read; what it cannot is `None`, never guessed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// The holder's fencing token, where the backend stores it with the
    /// lock (memory; etcd: its key's create revision; ZooKeeper: its node's
    /// czxid). `None` where tokens come from a counter that other attempts
    /// also advance (Redis, Redlock) or from a sequence shared by every
    /// name (PostgreSQL).
    pub token: Option<FencingToken>,
    /// What keeps the grant alive: the TTL it has left, or its session.
    pub expiry: Expiry,
    /// When the lock was granted, where the backend records it (memory).
    pub since: Option<SystemTime>,
    /// When the holder joined the lock's queue — at or before the grant —
    /// on the server's clock, where the backend records that and not the
    /// grant (ZooKeeper: its node's ctime).
    pub queued_since: Option<SystemTime>,
    /// Who holds it, as the server knows the holder: a PostgreSQL backend
    /// pid and client address, an etcd lease id, a ZooKeeper session id.
    /// Never the owner token, which would let a reader release the lock.
    pub holder: Option<String>,
}

impl Holder {
    /// A holder whose grant lives as `expiry` says, nothing else known.
    pub fn new(expiry: Expiry) -> Self {
        Self {
            token: None,
            expiry,
            since: None,
            queued_since: None,
            holder: None,
        }
    }
}

/// How long a held lock stays held if its holder does nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expiry {
    /// Its TTL ends after this long, as the server counts it (millisecond
    /// resolution), unless the holder extends it.
    In(Duration),
    /// It lives as long as its holder's session (a PostgreSQL connection,
    /// an etcd lease kept alive, a ZooKeeper session).
    Session,
}
