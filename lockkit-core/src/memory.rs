//! The in-process backend: exact, FIFO-fair, and free of polling.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::backend::{AcquireRequest, Claim, Grant, LockBackend, Wait};
use crate::capabilities::{
    Capabilities, Fairness, FencingGuarantee, LeaseModel, SafetyClass, WaitMode,
};
use crate::error::{Error, ErrorKind, Result};
use crate::fence::FencingToken;
use crate::name::LockName;
use crate::owner::OwnerToken;
use crate::status::{Expiry, Holder as StatusHolder, LockStatus};

const BACKEND: &str = "memory";

/// Locks that live in this process: correct for tasks of one process, gone
/// when it exits.
///
/// - Grants are exact: a lock is free once released or once its TTL has passed.
/// - Waiters are served in FIFO order; each is woken by the release that
///   frees the lock, or by a timer at the holder's expiry — never by polling.
/// - Fencing tokens come from one counter for the whole backend, so they
///   strictly increase across the grants of any name.
///
/// Clones share the same locks.
#[derive(Clone)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
}

struct Shared {
    table: Mutex<Table>,
    capabilities: Capabilities,
}

struct Table {
    locks: HashMap<LockName, Entry>,
    last_token: u64,
    last_waiter: u64,
    /// Size of `locks` at which expired, idle entries are next swept out.
    sweep_at: usize,
}

const FIRST_SWEEP_AT: usize = 1024;

#[derive(Default)]
struct Entry {
    holder: Option<Holder>,
    queue: VecDeque<Waiter>,
}

struct Holder {
    owner: OwnerToken,
    expires_at: Instant,
    token: FencingToken,
    since: SystemTime,
}

struct Waiter {
    id: u64,
    wake: Arc<Notify>,
}

impl Entry {
    /// Drops an expired holder; whether the lock is free at `now`.
    fn free_at(&mut self, now: Instant) -> bool {
        if self
            .holder
            .as_ref()
            .is_some_and(|holder| now >= holder.expires_at)
        {
            self.holder = None;
        }
        self.holder.is_none()
    }

    fn is_head(&self, id: u64) -> bool {
        self.queue.front().is_some_and(|waiter| waiter.id == id)
    }

    /// Hands the next turn to the first waiter.
    fn wake_head(&self) {
        if let Some(waiter) = self.queue.front() {
            waiter.wake.notify_one();
        }
    }

    fn is_idle(&self) -> bool {
        self.holder.is_none() && self.queue.is_empty()
    }
}

impl MemoryBackend {
    /// A new, empty lock table.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                table: Mutex::new(Table {
                    locks: HashMap::new(),
                    last_token: 0,
                    last_waiter: 0,
                    sweep_at: FIRST_SWEEP_AT,
                }),
                capabilities: Capabilities {
                    status: true,
                    ..Capabilities::new(
                        SafetyClass::Correctness,
                        FencingGuarantee::Linearizable,
                        LeaseModel::Ttl,
                        WaitMode::Notify,
                        Fairness::Fifo,
                    )
                },
            }),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // No code panics while holding the lock; if one ever did, the table's
        // invariants hold between statements, so keep serving.
        self.shared
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let locks = self.table().locks.len();
        f.debug_struct("MemoryBackend")
            .field("locks", &locks)
            .finish()
    }
}

impl Table {
    fn next_token(&mut self) -> Result<FencingToken> {
        self.last_token = self
            .last_token
            .checked_add(1)
            .ok_or_else(|| Error::new(ErrorKind::Backend, BACKEND, "fencing tokens exhausted"))?;
        Ok(FencingToken::new(self.last_token).expect("a counter incremented from 0 is at least 1"))
    }

    /// The entry for `name`, created if missing — after an occasional sweep
    /// of expired, idle entries, so abandoned names do not accumulate. Idle
    /// entries otherwise stay for the name's next acquire: the table holds
    /// at most about twice the names in use, plus [`FIRST_SWEEP_AT`].
    fn entry(&mut self, name: &LockName, now: Instant) -> &mut Entry {
        if self.locks.len() >= self.sweep_at && !self.locks.contains_key(name) {
            self.locks.retain(|_, entry| {
                entry.free_at(now);
                !entry.is_idle()
            });
            self.sweep_at = (self.locks.len() * 2).max(FIRST_SWEEP_AT);
        }
        self.locks.entry(name.clone()).or_default()
    }
}

/// A waiter's place in a lock's queue. Dropping it — a timeout, or the
/// acquire future being cancelled — leaves the queue and, if this waiter
/// had the next turn, hands it on, so a cancelled waiter never stalls others.
struct QueuePlace {
    backend: MemoryBackend,
    name: LockName,
    id: u64,
    wake: Arc<Notify>,
    granted: bool,
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        if let Some(entry) = self.backend.table().locks.get_mut(&self.name) {
            let was_head = entry.is_head(self.id);
            entry.queue.retain(|waiter| waiter.id != self.id);
            if was_head && entry.free_at(Instant::now()) {
                entry.wake_head();
            }
        }
    }
}

fn not_held(
    action: &str,
    name: &LockName,
    holder: Option<&Holder>,
    owner: &OwnerToken,
    now: Instant,
) -> Error {
    let why = match holder {
        Some(holder) if holder.owner == *owner => {
            format!(
                "it expired {:?} ago",
                now.saturating_duration_since(holder.expires_at)
            )
        }
        Some(holder) if now < holder.expires_at => "another owner holds it".to_owned(),
        _ => "it is not held".to_owned(),
    };
    Error::not_held(BACKEND, action, name.as_str(), why)
}

#[async_trait]
impl LockBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> &Capabilities {
        &self.shared.capabilities
    }

    /// # Cancel safety
    ///
    /// Dropping the future at any await leaves nothing behind: a waiter's
    /// place is taken out of the queue at once, synchronously, and a turn it
    /// was given passes to the next waiter. Nothing is granted until the
    /// future returns.
    async fn acquire(&self, request: AcquireRequest) -> Result<Grant> {
        // A free lock is granted without awaiting anything: spend the task's
        // cooperative budget, so a loop of acquires and releases yields to
        // the other tasks of its worker now and then instead of starving them.
        tokio::task::consume_budget().await;
        let mut place: Option<QueuePlace> = None;
        let mut contended = false;
        loop {
            let (wake, wake_at) = {
                let mut table = self.table();
                let now = Instant::now();
                let entry = table.entry(&request.name, now);
                let free = entry.free_at(now);
                let my_turn = match &place {
                    Some(place) => entry.is_head(place.id),
                    None => entry.queue.is_empty(),
                };
                if free && my_turn {
                    let expires_at = now.checked_add(request.ttl).ok_or_else(|| {
                        Error::invalid_input(BACKEND, "ttl is too long for the clock")
                    })?;
                    if let Some(place) = &mut place {
                        entry.queue.pop_front();
                        place.granted = true;
                    }
                    let token = table.next_token()?;
                    // The table was borrowed again for the token.
                    table.entry(&request.name, now).holder = Some(Holder {
                        owner: request.owner,
                        expires_at,
                        token,
                        since: SystemTime::now(),
                    });
                    return Ok(Grant {
                        contended,
                        ..Grant::new(token, Some(expires_at))
                    });
                }
                contended = true;
                let holder_expiry = entry.holder.as_ref().map(|holder| holder.expires_at);
                match request.wait {
                    Wait::No => {
                        let held = match holder_expiry {
                            Some(at) => format!("another owner holds it for {:?}", at - now),
                            None => "earlier waiters are queued for it".to_owned(),
                        };
                        return Err(Error::contended(
                            BACKEND,
                            "acquire",
                            request.name.as_str(),
                            held,
                        ));
                    }
                    Wait::Until(deadline) if now >= deadline => {
                        return Err(Error::timeout(
                            BACKEND,
                            "acquire",
                            request.name.as_str(),
                            "the wait reached its deadline",
                        ));
                    }
                    Wait::Until(_) | Wait::Forever => {}
                }
                let place = match &mut place {
                    Some(place) => place,
                    None => {
                        table.last_waiter += 1;
                        let id = table.last_waiter;
                        let wake = Arc::new(Notify::new());
                        let waiter = Waiter {
                            id,
                            wake: Arc::clone(&wake),
                        };
                        table.entry(&request.name, now).queue.push_back(waiter);
                        place.insert(QueuePlace {
                            backend: self.clone(),
                            name: request.name.clone(),
                            id,
                            wake,
                            granted: false,
                        })
                    }
                };
                let deadline = match request.wait {
                    Wait::Until(deadline) => Some(deadline),
                    Wait::No | Wait::Forever => None,
                };
                let wake_at = match (holder_expiry, deadline) {
                    (Some(expiry), Some(deadline)) => Some(expiry.min(deadline)),
                    (expiry, deadline) => expiry.or(deadline),
                };
                (Arc::clone(&place.wake), wake_at)
            };
            // `Notify` keeps a wake sent before we start waiting, so a release
            // between unlocking the table and this await is not missed.
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep_until(at.into()) => {}
                    }
                }
                None => wake.notified().await,
            }
        }
    }

    async fn extend(&self, claim: &Claim, ttl: Duration) -> Result<Option<Instant>> {
        let mut table = self.table();
        let now = Instant::now();
        let entry = table.locks.get_mut(&claim.name);
        let holder = entry.and_then(|entry| entry.holder.as_mut());
        match holder {
            Some(holder) if holder.owner == claim.owner && now < holder.expires_at => {
                let expires_at = now.checked_add(ttl).ok_or_else(|| {
                    Error::invalid_input(BACKEND, "ttl is too long for the clock")
                })?;
                holder.expires_at = expires_at;
                Ok(Some(expires_at))
            }
            holder => Err(not_held(
                "extend",
                &claim.name,
                holder.as_deref(),
                &claim.owner,
                now,
            )),
        }
    }

    async fn release(&self, claim: &Claim) -> Result<()> {
        let mut table = self.table();
        let now = Instant::now();
        let Some(entry) = table.locks.get_mut(&claim.name) else {
            return Err(not_held("release", &claim.name, None, &claim.owner, now));
        };
        let outcome = match &entry.holder {
            Some(holder) if holder.owner == claim.owner => {
                let outcome = if now < holder.expires_at {
                    Ok(())
                } else {
                    Err(not_held(
                        "release",
                        &claim.name,
                        Some(holder),
                        &claim.owner,
                        now,
                    ))
                };
                entry.holder = None;
                entry.wake_head();
                outcome
            }
            holder => Err(not_held(
                "release",
                &claim.name,
                holder.as_ref(),
                &claim.owner,
                now,
            )),
        };
        outcome
    }

    async fn status(&self, name: &LockName) -> Result<LockStatus> {
        let table = self.table();
        let now = Instant::now();
        let holder = table
            .locks
            .get(name)
            .and_then(|entry| entry.holder.as_ref());
        Ok(match holder {
            Some(holder) if now < holder.expires_at => {
                let mut status = StatusHolder::new(Expiry::In(holder.expires_at - now));
                status.token = Some(holder.token);
                status.since = Some(holder.since);
                LockStatus::Held(status)
            }
            _ => LockStatus::Free,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, owner: OwnerToken) -> AcquireRequest {
        AcquireRequest {
            name: LockName::new(name).unwrap(),
            owner,
            ttl: Duration::from_secs(60),
            wait: Wait::No,
        }
    }

    /// Released names stay in the table for their next acquire, but a
    /// stream of new names never grows it past about twice the names held.
    #[tokio::test]
    async fn idle_names_are_swept_so_the_table_stays_near_the_names_held() {
        let backend = MemoryBackend::new();
        let owner = OwnerToken::generate().unwrap();
        let held = 3_000;
        for i in 0..held {
            backend
                .acquire(request(&format!("held:{i}"), owner))
                .await
                .unwrap();
        }
        let mut largest = 0;
        for i in 0..20_000 {
            let request = request(&format!("passing:{i}"), owner);
            let claim = Claim {
                name: request.name.clone(),
                owner,
                token: backend.acquire(request).await.unwrap().token,
                handle: None,
            };
            backend.release(&claim).await.unwrap();
            largest = largest.max(backend.table().locks.len());
        }
        assert!(largest >= held, "the held names are in the table");
        assert!(
            largest <= 2 * held + 1,
            "the table grew to {largest} entries for {held} names held"
        );
        // The held ones survive every sweep.
        let again = backend.acquire(request("held:0", owner)).await;
        assert_eq!(again.unwrap_err().kind(), ErrorKind::Contended);
    }
}
