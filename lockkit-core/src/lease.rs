//! A held lock: its tokens, its validity, its state and the signal when it is lost.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::backend::{Claim, Grant, LockBackend};
use crate::background::{Undo, UndoStep};
use crate::error::{Error, ErrorKind, Result};
use crate::fence::FencingToken;
use crate::life::{Life, Slot};
use crate::options::ResolvedRenewal;
use crate::owner::OwnerToken;
use crate::repeat::{self, REPEAT_FOR};
use crate::session::{SessionHealth, SessionWatch};
use crate::telemetry::Instruments;

mod renewal;

use renewal::RenewalTask;

/// Where a lease stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeaseState {
    /// Held and within its validity.
    Held,
    /// Still within its validity, but renewal is failing or the backend
    /// session is suspended: the lease may be lost before it can be renewed.
    Uncertain,
    /// No longer held: expired, taken over, or its session ended.
    Lost,
    /// Released by its holder.
    Released,
}

impl LeaseState {
    /// Whether the lease may still be relied on (Held or Uncertain).
    pub fn is_valid(self) -> bool {
        matches!(self, Self::Held | Self::Uncertain)
    }
}

/// The lease's state and validity bound.
#[derive(Debug, Clone, Copy)]
struct Status {
    state: LeaseState,
    valid_until: Option<Instant>,
}

impl Status {
    /// The lease state machine's one rule, kept here alone: a lease that
    /// saw `Lost` never sees `Held` again. A successful extension makes the
    /// lease Held with its new bound only if the lease is still valid
    /// (`now`, its state with its session applied, when the answer is
    /// recorded): one whose bound passed meanwhile was reported Lost to its
    /// observers, and stays Lost even if the server extended the lock
    /// (its release frees it); a released lease stays released. Returns
    /// whether the status changed.
    fn extended(&mut self, now: LeaseState, valid_until: Option<Instant>) -> bool {
        match now {
            LeaseState::Held | LeaseState::Uncertain => {
                self.state = LeaseState::Held;
                self.valid_until = valid_until;
                true
            }
            LeaseState::Lost => {
                self.state = LeaseState::Lost;
                true
            }
            LeaseState::Released => false,
        }
    }

    /// The state at `now`: a valid lease past its bound is lost.
    fn at(self, now: Instant) -> LeaseState {
        match self.valid_until {
            Some(bound) if self.state.is_valid() && now >= bound => LeaseState::Lost,
            _ => self.state,
        }
    }
}

/// What the lease, its views and its renewal task share.
pub(crate) struct LeaseCore {
    pub(crate) backend: Arc<dyn LockBackend>,
    pub(crate) claim: Claim,
    pub(crate) granted_at: Instant,
    pub(crate) instruments: Arc<Instruments>,
    status: Mutex<Status>,
    /// Woken at every change of `status`.
    changed: Notify,
    /// The sessions and per-grant signals the grant lives on ([`Grant::watches`]).
    watches: Vec<SessionWatch>,
    /// The locker that granted it: closing it releases this lease.
    life: Arc<Life<LeaseCore>>,
    /// The lease's entry in `life`'s table of held leases.
    slot: OnceLock<Slot>,
    /// Set by whoever ends the lease — release, drop or close — so only one does.
    ending: AtomicBool,
    finished: AtomicBool,
}

impl LeaseCore {
    pub(crate) fn state(&self) -> LeaseState {
        self.state_with(self.status(), Instant::now())
    }

    fn status(&self) -> Status {
        // A `Status` is valid between any two statements: keep serving after
        // a panic elsewhere poisoned the mutex.
        *self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change` to the status; wakes the observers if it returns true.
    fn update(&self, change: impl FnOnce(&mut Status) -> bool) {
        let changed = change(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
        if changed {
            self.changed.notify_waiters();
        }
    }

    /// The state at `now` given `status`, with the session applied: past
    /// the session's bound the lease is Lost, as past its own; a suspended
    /// session makes a held lease Uncertain, an ended one Lost.
    fn state_with(&self, status: Status, now: Instant) -> LeaseState {
        let mut bounded = status;
        let mut health = SessionHealth::Alive;
        for watch in &self.watches {
            let session = watch.status();
            bounded.valid_until = earlier(bounded.valid_until, session.valid_until);
            health = match (health, session.health) {
                (SessionHealth::Ended, _) | (_, SessionHealth::Ended) => SessionHealth::Ended,
                (SessionHealth::Suspended, _) | (_, SessionHealth::Suspended) => {
                    SessionHealth::Suspended
                }
                _ => SessionHealth::Alive,
            };
        }
        let state = bounded.at(now);
        match (state, health) {
            (LeaseState::Held | LeaseState::Uncertain, SessionHealth::Ended) => LeaseState::Lost,
            (LeaseState::Held, SessionHealth::Suspended) => LeaseState::Uncertain,
            _ => state,
        }
    }

    /// Until when the lease is certainly held: the earlier of its own bound
    /// and its session's.
    pub(crate) fn valid_until(&self) -> Option<Instant> {
        self.bound(self.status())
    }

    fn bound(&self, status: Status) -> Option<Instant> {
        self.watches
            .iter()
            .fold(status.valid_until, |bound, watch| {
                earlier(bound, watch.valid_until())
            })
    }

    /// Records a successful extension (`None`: a session grant confirmed
    /// held, still without a time bound of its own); see
    /// [`Status::extended`] for the rule it keeps.
    fn extended(&self, valid_until: Option<Instant>) {
        self.update(|status| {
            let now = self.state_with(*status, Instant::now());
            status.extended(now, valid_until)
        });
    }

    /// Records what an extension found — for an explicit [`Lease::extend`]
    /// and for the renewal task alike: held again with the new bound, or
    /// lost if the backend found another owner (or the answer came after
    /// the lease's bound). Any other failure leaves the state as it is.
    /// Returns the state after.
    pub(crate) fn record_extension(&self, outcome: &Result<Option<Instant>>) -> LeaseState {
        match outcome {
            Ok(valid_until) => self.extended(*valid_until),
            Err(error) if error.kind() == ErrorKind::NotHeld => self.mark_lost(),
            Err(_) => {}
        }
        self.state()
    }

    /// Renewal is failing; the lease stays valid until its bound.
    pub(crate) fn mark_uncertain(&self) {
        self.update(|status| {
            let uncertain = status.state == LeaseState::Held;
            if uncertain {
                status.state = LeaseState::Uncertain;
            }
            uncertain
        });
    }

    /// The backend says the lock is no longer ours.
    pub(crate) fn mark_lost(&self) {
        self.update(|status| {
            let lost = status.state.is_valid();
            if lost {
                status.state = LeaseState::Lost;
            }
            lost
        });
    }

    /// Claims the lease's end for the caller; false if release, drop or
    /// close already claimed it.
    fn claim_end(&self) -> bool {
        !self.ending.swap(true, Ordering::AcqRel)
    }

    /// The latest instant an owner-checked operation on this lease starts a
    /// repeated attempt: [`REPEAT_FOR`] from now, or the end of the lease's
    /// validity if sooner (past it there is nothing left to act on).
    fn repeat_until(&self, now: Instant) -> Instant {
        let bound = now + REPEAT_FOR;
        self.valid_until().map_or(bound, |valid| valid.min(bound))
    }

    /// Releases the lock at the backend — repeated after a transient
    /// failure, within [`repeat_until`](Self::repeat_until) — and ends the
    /// lease with the outcome: `released` if it was held until now (the
    /// holder's release: Released; close's: Lost). The caller has claimed the end.
    async fn release(&self, released: LeaseState) -> Result<()> {
        // The hold ends when its holder lets go.
        let let_go = Instant::now();
        let state = self.state_with(self.status(), let_go);
        // Even an expired lease is released: owner-checked, it frees what is
        // left of the key (drift allowance) and never touches a new holder's.
        // The first attempt goes straight out; repeating, rare, is boxed so
        // the common path's future stays small.
        let repeated = match self.backend.release(&self.claim).await {
            Err(error) if repeat::is_transient(&error) => {
                tracing::debug!(%error, "release failed before an answer; repeating it");
                let until = self.repeat_until(let_go);
                let mut repeated = Box::pin(repeat::until_answered(until, || {
                    self.backend.release(&self.claim)
                }))
                .await;
                repeated.attempts += 1;
                repeated
            }
            outcome => repeat::Repeated {
                outcome,
                attempts: 1,
            },
        };
        let outcome = match repeated.outcome {
            // An earlier attempt's reply was lost. Still within the lease's
            // validity the lock cannot have expired, so `NotHeld` now means
            // that attempt released it.
            Err(error)
                if error.kind() == ErrorKind::NotHeld
                    && repeated.attempts > 1
                    && self.state().is_valid() =>
            {
                Ok(())
            }
            outcome => outcome,
        };
        match outcome {
            Ok(()) if state.is_valid() => {
                self.finish(released, let_go);
                Ok(())
            }
            Ok(()) => {
                self.finish(LeaseState::Lost, let_go);
                Err(self.not_held(state, "release"))
            }
            Err(error) if error.kind() == ErrorKind::NotHeld => {
                self.finish(LeaseState::Lost, let_go);
                Err(error)
            }
            Err(error) => {
                // The lock stays until its TTL or session ends; the lease is gone.
                self.finish(released, let_go);
                Err(error)
            }
        }
    }

    /// Releases the lease for [`Locker::close`](crate::Locker::close),
    /// unless its holder is already releasing it. The lease turns Lost: its
    /// holder did not let go, and a critical section still running must stop.
    pub(crate) async fn release_at_close(&self) {
        if !self.claim_end() {
            return;
        }
        if let Err(error) = self.release(LeaseState::Lost).await {
            if error.kind() != ErrorKind::NotHeld {
                tracing::warn!(
                    backend = self.backend.name(),
                    lock = %self.claim.name,
                    %error,
                    "release at close failed; the lock lapses at its TTL or session end"
                );
            }
        }
    }

    /// Ends the lease once: publishes the final state and records the hold
    /// time up to `ended` and, for a lost lease, the loss.
    fn finish(&self, final_state: LeaseState, ended: Instant) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(slot) = self.slot.get() {
            self.life.leave(*slot);
        }
        self.update(|status| {
            status.state = final_state;
            true
        });
        self.instruments
            .record_hold(ended.saturating_duration_since(self.granted_at));
        if final_state == LeaseState::Lost {
            self.instruments.record_loss();
        }
    }

    /// Resolves with the first state for which `done` holds.
    async fn until(&self, done: impl Fn(LeaseState) -> bool) -> LeaseState {
        let mut watches = self.watches.clone();
        loop {
            // Registered before the status is read, so a change in between
            // still wakes it.
            let changed = self.changed.notified();
            let status = self.status();
            let state = self.state_with(status, Instant::now());
            if done(state) {
                return state;
            }
            let bound = async {
                match self.bound(status) {
                    Some(bound) => tokio::time::sleep_until(bound.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = changed => {}
                () = bound => {}
                () = any_changed(&mut watches) => {}
            }
        }
    }

    /// A `NotHeld` error explaining, from the lease's own clock, why.
    fn not_held(&self, state: LeaseState, action: &str) -> Error {
        let name = &self.claim.name;
        let why = match (state, self.valid_until()) {
            _ if self.life.closed() => {
                "it was lost when its client was closed, which released it".to_owned()
            }
            (LeaseState::Released, _) => {
                "it was already released (by its holder, or by closing its client)".to_owned()
            }
            (_, Some(bound)) if Instant::now() >= bound => {
                format!("its lease expired {:?} ago", bound.elapsed())
            }
            _ => "it was lost".to_owned(),
        };
        Error::not_held(self.backend.name(), action, name.as_str(), why)
    }
}

/// Resolves when any of `watches` may have changed; never without one.
async fn any_changed(watches: &mut [SessionWatch]) {
    if let [watch] = watches {
        // The common case, a session grant: no allocation.
        return watch.changed().await;
    }
    let mut changes: Vec<_> = watches
        .iter_mut()
        .map(|watch| Box::pin(watch.changed()))
        .collect();
    std::future::poll_fn(|context| {
        let changed = changes
            .iter_mut()
            .any(|change| change.as_mut().poll(context).is_ready());
        if changed {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// The earlier of two optional bounds (`None`: no bound).
fn earlier(first: Option<Instant>, second: Option<Instant>) -> Option<Instant> {
    match (first, second) {
        (Some(first), Some(second)) => Some(first.min(second)),
        (first, second) => first.or(second),
    }
}

/// A read-only view of a lease: its tokens, state and loss signal.
///
/// Cheap to clone; handed to the closure of
/// [`Locker::with_lock`](crate::Locker::with_lock), and reachable from a
/// [`Lease`] through `Deref`.
#[derive(Clone)]
pub struct LeaseView {
    core: Arc<LeaseCore>,
}

impl LeaseView {
    /// The lock's name.
    pub fn name(&self) -> &str {
        self.core.claim.name.as_str()
    }

    /// The grant's fencing token: pass it to the protected resource, which
    /// must refuse any token lower than the highest it has seen.
    pub fn fencing_token(&self) -> FencingToken {
        self.core.claim.token
    }

    /// The grant's owner token.
    pub fn owner(&self) -> OwnerToken {
        self.core.claim.owner
    }

    /// The claim the lease presents to its backend.
    #[cfg(feature = "conformance")]
    pub(crate) fn claim(&self) -> &Claim {
        &self.core.claim
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        self.core.backend.name()
    }

    /// Until when the lease is certainly held, on the monotonic clock; `None`
    /// for a session lease with no time bound.
    pub fn valid_until(&self) -> Option<Instant> {
        self.core.valid_until()
    }

    /// How much validity is left (zero once expired); `None` without a time bound.
    pub fn remaining(&self) -> Option<Duration> {
        self.valid_until()
            .map(|bound| bound.saturating_duration_since(Instant::now()))
    }

    /// The lease's state now.
    pub fn state(&self) -> LeaseState {
        self.core.state()
    }

    /// Whether the state is [`Held`](LeaseState::Held).
    pub fn is_held(&self) -> bool {
        self.state() == LeaseState::Held
    }

    /// Resolves when the lease stops being [`Held`](LeaseState::Held) —
    /// Uncertain, Lost or Released — with that state. Use it in
    /// `tokio::select!` to abort a critical section at the first sign of trouble.
    pub async fn not_held(&self) -> LeaseState {
        self.core.until(|state| state != LeaseState::Held).await
    }

    /// Resolves when the lease is Lost (or Released), with that state.
    pub async fn lost(&self) -> LeaseState {
        self.core.until(|state| !state.is_valid()).await
    }
}

impl fmt::Debug for LeaseView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("backend", &self.backend())
            .field("name", &self.core.claim.name)
            .field("fencing_token", &self.fencing_token())
            .field("state", &self.state())
            .field("valid_until", &self.valid_until())
            .finish()
    }
}

/// A held lock.
///
/// Release it with [`release`](Self::release), which reports errors. A lease
/// dropped while held is released in the background (with a warning in the
/// log); its TTL or session end is the backstop. Read-only accessors come
/// from [`LeaseView`].
pub struct Lease {
    view: LeaseView,
    renewal: Option<RenewalTask>,
    ended: bool,
}

impl Lease {
    /// Starts the lease of a grant; `None` if its locker was closed
    /// meanwhile, in which case the grant has been released again.
    pub(crate) async fn start(
        backend: Arc<dyn LockBackend>,
        claim: Claim,
        grant: Grant,
        granted_at: Instant,
        instruments: Arc<Instruments>,
        life: Arc<Life<LeaseCore>>,
        renewal: Option<ResolvedRenewal>,
    ) -> Option<Self> {
        let core = Arc::new(LeaseCore {
            backend,
            claim,
            granted_at,
            instruments,
            status: Mutex::new(Status {
                state: LeaseState::Held,
                valid_until: grant.valid_until,
            }),
            changed: Notify::new(),
            watches: grant.watches,
            life,
            slot: OnceLock::new(),
            ending: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        });
        // The owner token is random: its first byte spreads leases over shards.
        let shard = usize::from(core.claim.owner.as_bytes()[0]);
        match core.life.enter(shard, Arc::downgrade(&core)) {
            Some(slot) => {
                let _ = core.slot.set(slot);
            }
            None => {
                // Closed while the grant was on its way: give it back.
                core.claim_end();
                let _ = core.release(LeaseState::Lost).await;
                return None;
            }
        }
        let renewal = renewal.map(|policy| RenewalTask::spawn(Arc::clone(&core), policy));
        Some(Self {
            view: LeaseView { core },
            renewal,
            ended: false,
        })
    }

    /// A cheap, cloneable view of this lease.
    pub fn view(&self) -> LeaseView {
        self.view.clone()
    }

    /// Extends the lease to `ttl` from now.
    ///
    /// Fails with `NotHeld` without I/O if the lease already expired or was
    /// lost (a lease that reported `Lost` never becomes `Held` again), and
    /// with `NotHeld` if the backend finds another owner. A transient
    /// failure (`Unavailable`: a dropped connection) is repeated for up to
    /// [`REPEAT_FOR`] or until the lease's validity ends, whichever is sooner.
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        let core = &self.view.core;
        let capabilities = core.backend.capabilities();
        let backend = core.backend.name();
        if !capabilities.extend {
            return Err(Error::unsupported(
                backend,
                "extend: this backend's leases are kept alive by their session",
            ));
        }
        capabilities.check_ttl("ttl", ttl, backend)?;
        let state = core.state();
        if !state.is_valid() {
            return Err(core.not_held(state, "extend"));
        }
        let repeated = repeat::until_answered(core.repeat_until(Instant::now()), || {
            core.backend.extend(&core.claim, ttl)
        })
        .await;
        match core.record_extension(&repeated.outcome) {
            // Extended at the server, but answered after the lease's bound:
            // it was reported Lost, and stays so.
            after if repeated.outcome.is_ok() && !after.is_valid() => {
                Err(core.not_held(after, "extend"))
            }
            _ => repeated.outcome.map(drop),
        }
    }

    /// Releases the lock, after stopping its renewal.
    ///
    /// Returns `NotHeld` if the lease had expired or been lost before the
    /// release — the critical section overran its lease and its writes may
    /// have raced another holder's (the fencing token is the defence) — or
    /// if closing its client released it already.
    ///
    /// A transient failure before the server answered (`Unavailable`: a
    /// connection dropped by a network blip or a server restart) is
    /// repeated on the reconnected connection — the release is
    /// owner-checked, so repeating it is safe — for up to [`REPEAT_FOR`]
    /// (5 s) or until the lease's validity ends, whichever is sooner. So a
    /// release returns within that bound plus one attempt (the backend's
    /// reply timeout); if it still fails, the error is returned and the lock
    /// lapses at its TTL or session end.
    pub async fn release(mut self) -> Result<()> {
        if let Some(renewal) = self.renewal.take() {
            renewal.stop().await;
        }
        self.ended = true;
        let core = Arc::clone(&self.view.core);
        if !core.claim_end() {
            return Err(core.not_held(LeaseState::Released, "release"));
        }
        // Cancelled part-way (a timeout around the release, a dropped
        // `with_lock`), the release finishes in the background.
        let unfinished = release_later(&core, None);
        // Counted as in flight once it has to wait, so close waits for it.
        let outcome = core
            .life
            .background
            .track(core.release(LeaseState::Released))
            .await;
        unfinished.disarm();
        outcome
    }
}

/// A lease being let go, and its renewal if it still runs.
type Letting = (Arc<LeaseCore>, Option<RenewalTask>);

/// Once armed, releases a lease whose end the caller claimed if nothing
/// else finishes it: on its locker's background (reachable from any
/// thread), after stopping its renewal. Without a reachable runtime the lock
/// lapses at its TTL or session end, and the lease ends in the state it is
/// in. Disarm it when the release finished here.
fn release_later(
    core: &Arc<LeaseCore>,
    renewal: Option<RenewalTask>,
) -> Undo<'_, Letting, impl UndoStep<Letting>, impl FnOnce(Letting)> {
    Undo::new(
        &core.life.background,
        (Arc::clone(core), renewal),
        |(core, renewal): Letting| {
            tracing::warn!(
                backend = core.backend.name(),
                lock = %core.claim.name,
                "lease let go without a finished release; releasing it in the background on its client's runtime"
            );
            async move {
                if let Some(renewal) = renewal {
                    renewal.stop().await;
                }
                if let Err(error) = core.release(LeaseState::Released).await {
                    if error.kind() != ErrorKind::NotHeld {
                        tracing::warn!(
                            backend = core.backend.name(),
                            lock = %core.claim.name,
                            %error,
                            "background release failed; the lock lapses at its TTL or session end"
                        );
                    }
                }
            }
        },
        |(core, _renewal): Letting| {
            tracing::warn!(
                backend = core.backend.name(),
                lock = %core.claim.name,
                "lease let go without a finished release where no tokio runtime is reachable; \
                 the lock lapses at its TTL or session end"
            );
            core.finish(core.state(), Instant::now());
        },
    )
}

impl Deref for Lease {
    type Target = LeaseView;

    fn deref(&self) -> &LeaseView {
        &self.view
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.view, f)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let core = Arc::clone(&self.view.core);
        if core.claim_end() {
            // On a thread without a runtime too: the lease reaches the
            // runtime its locker was used on.
            drop(release_later(&core, self.renewal.take()));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::life::Life;
    use crate::{LockName, MemoryBackend};

    type Outcome = std::result::Result<(), Box<dyn std::error::Error>>;

    pub(crate) type Started = std::result::Result<Lease, Box<dyn std::error::Error>>;

    /// A lease as a backend would start it: valid until `own`, living on
    /// `watches` (a session grant's session, a per-grant signal). Shared by
    /// the lease and session tests.
    pub(crate) async fn started(
        own: Option<Instant>,
        watches: impl IntoIterator<Item = SessionWatch>,
    ) -> Started {
        let claim = Claim {
            name: LockName::new("lease-test")?,
            owner: OwnerToken::generate()?,
            token: FencingToken::new(1).ok_or("token 0")?,
            handle: None,
        };
        let grant = Grant {
            watches: watches.into_iter().collect(),
            ..Grant::new(claim.token, own)
        };
        let lease = Lease::start(
            Arc::new(MemoryBackend::new()),
            claim,
            grant,
            Instant::now(),
            Arc::new(Instruments::new("memory")),
            Arc::new(Life::new()),
            None,
        )
        .await;
        Ok(lease.ok_or("the locker was closed")?)
    }

    async fn lease_until(valid_until: Instant) -> Started {
        started(Some(valid_until), None).await
    }

    /// Records an extension that reported a bound a minute on.
    fn extended_a_minute(core: &LeaseCore) {
        core.record_extension(&Ok(Some(Instant::now() + Duration::from_secs(60))));
    }

    #[tokio::test]
    async fn a_lease_that_saw_lost_never_sees_held_again() -> Outcome {
        // Past its bound: an extension sent now arrives too late.
        let lease = lease_until(Instant::now()).await?;
        assert_eq!(lease.state(), LeaseState::Lost);
        let core = &lease.view.core;
        extended_a_minute(core);
        assert_eq!(lease.state(), LeaseState::Lost);

        // Lost by the backend's word: a later extension does not revive it.
        let lease = lease_until(Instant::now() + Duration::from_secs(60)).await?;
        let core = &lease.view.core;
        core.record_extension(&Err(Error::not_held(
            "memory",
            "extend",
            "lease-rule",
            "another owner holds it",
        )));
        assert_eq!(lease.state(), LeaseState::Lost);
        extended_a_minute(core);
        assert_eq!(lease.state(), LeaseState::Lost);

        // Still valid when it was sent: held, with the new bound.
        let lease = lease_until(Instant::now() + Duration::from_secs(60)).await?;
        let core = &lease.view.core;
        let later = Instant::now() + Duration::from_secs(120);
        core.record_extension(&Ok(Some(later)));
        assert_eq!(lease.state(), LeaseState::Held);
        assert_eq!(lease.valid_until(), Some(later));
        Ok(())
    }
}
