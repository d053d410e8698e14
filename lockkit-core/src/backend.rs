//! The trait every backend implements, and the values that cross it.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::capabilities::Capabilities;
use crate::error::{Error, Result};
use crate::fence::FencingToken;
use crate::name::LockName;
use crate::owner::OwnerToken;
use crate::session::SessionWatch;
use crate::status::LockStatus;

/// How long an acquire may wait for a lock held by someone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Do not wait: a held lock fails with [`Contended`](crate::ErrorKind::Contended).
    No,
    /// Wait until this instant, then fail with [`Timeout`](crate::ErrorKind::Timeout).
    Until(Instant),
    /// Wait as long as it takes.
    Forever,
}

impl Wait {
    /// Waiting at most `wait` from now; a wait too long for the clock to
    /// represent its deadline means waiting forever.
    pub fn at_most(wait: Duration) -> Self {
        Instant::now()
            .checked_add(wait)
            .map_or(Self::Forever, Self::Until)
    }
}

/// One acquire, validated by [`Locker`](crate::Locker) before the backend sees it.
#[derive(Debug, Clone)]
pub struct AcquireRequest {
    /// The lock's name (already validated).
    pub name: LockName,
    /// The owner token the backend stores with the grant.
    pub owner: OwnerToken,
    /// How long the grant lives unless extended (within the backend's
    /// [`min_ttl`](Capabilities::min_ttl)..=[`max_ttl`](Capabilities::max_ttl)).
    /// Session backends may ignore it.
    pub ttl: Duration,
    /// How long to wait if the lock is held.
    pub wait: Wait,
}

/// What a backend returns for a successful acquire.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The grant's fencing token.
    pub token: FencingToken,
    /// Until when the grant is certainly held: the instant the granting
    /// request was *sent*, plus the TTL, minus the drift allowance. `None` for
    /// a session grant with no time bound of its own.
    pub valid_until: Option<Instant>,
    /// Whether the lock was held by someone else when this acquire began.
    pub contended: bool,
    /// What else the grant lives on: the watch of its session (a session
    /// grant), and of any signal the backend keeps for this grant alone
    /// (etcd: its key was deleted). Each applies: the lease turns Uncertain
    /// while one is suspended, and Lost when one ends or when its bound (see
    /// [`SessionSignal::confirm`](crate::SessionSignal::confirm)) passes
    /// unconfirmed. The lease's bound is the earliest of `valid_until` and
    /// theirs. Empty for a TTL grant.
    pub watches: Vec<SessionWatch>,
    /// The backend's own data for this grant, handed back in the
    /// [`Claim`] at every extend and release (see [`GrantHandle`]).
    pub handle: Option<GrantHandle>,
}

impl Grant {
    /// A grant of `token`, certainly held until `valid_until`, made without
    /// waiting for another holder, living on nothing else, with no handle.
    pub fn new(token: FencingToken, valid_until: Option<Instant>) -> Self {
        Self {
            token,
            valid_until,
            contended: false,
            watches: Vec::new(),
            handle: None,
        }
    }
}

/// A backend's own data for one grant — the ZooKeeper node path and
/// sequence, the etcd key and create revision, the PostgreSQL session that
/// holds the lock — opaque to everything above the backend.
///
/// The backend puts it in its [`Grant`]; the lease keeps it and hands it back
/// in the [`Claim`] of every [`extend`](LockBackend::extend) and
/// [`release`](LockBackend::release), the way a put's result carries a
/// version that comes back at the next call, so the backend need not find
/// the grant again from its name. A claim without one, or with another
/// backend's, is a claim this backend never granted. Cheap to clone (one
/// `Arc`); its `Debug` shows nothing of the data.
#[derive(Clone)]
pub struct GrantHandle(Arc<dyn Any + Send + Sync>);

impl GrantHandle {
    /// A handle holding `data`.
    pub fn new<T: Any + Send + Sync>(data: T) -> Self {
        Self(Arc::new(data))
    }

    /// The data, if it is a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl fmt::Debug for GrantHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GrantHandle(..)")
    }
}

/// What a holder presents to extend or release: the backend acts only if the
/// owner token still matches.
#[derive(Clone)]
pub struct Claim {
    /// The lock's name.
    pub name: LockName,
    /// The owner token given at acquire.
    pub owner: OwnerToken,
    /// The fencing token of the grant.
    pub token: FencingToken,
    /// The [`Grant::handle`] of the grant, as the backend made it.
    pub handle: Option<GrantHandle>,
}

impl Claim {
    /// The grant's handle data, if the claim carries a `T`.
    pub fn handle<T: Any>(&self) -> Option<&T> {
        self.handle.as_ref().and_then(GrantHandle::get)
    }
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim")
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("token", &self.token)
            .field("handle", &self.handle)
            .finish()
    }
}

/// A lock service: the few operations that differ between backends.
///
/// Everything composed from them — waiting policy, `try_acquire`,
/// `with_lock`, automatic renewal, release on drop, instrumentation — lives
/// once in [`Locker`](crate::Locker) and [`Lease`](crate::Lease). The trait is
/// object-safe; `Locker` holds it as `Arc<dyn LockBackend>`.
///
/// Every implementation must keep the guarantees the
/// [`conformance`](crate#conformance) suite checks; in particular:
/// - `acquire` grants only if the lock is free (or expired), and is
///   cancellation-safe: dropping its future at any await point leaves no lock
///   held beyond its TTL or session;
/// - `extend` and `release` act only if `claim.owner` still owns the lock and
///   otherwise return [`NotHeld`](crate::ErrorKind::NotHeld) having changed nothing;
/// - an operation the backend cannot perform returns
///   [`Unsupported`](crate::ErrorKind::Unsupported).
///
/// A wrapper of another backend forwards every method, the provided ones
/// (`close`) included, and says so to clippy with
/// `#[deny(clippy::missing_trait_methods)]` on its impl, as the conformance
/// suite's probe does.
#[async_trait]
pub trait LockBackend: Send + Sync + fmt::Debug + 'static {
    /// The backend's short name (`memory`, `redis`, …), used in errors, spans and metrics.
    fn name(&self) -> &'static str;

    /// What this backend can do and promise.
    fn capabilities(&self) -> &Capabilities;

    /// Grants `request.name` to `request.owner`, waiting as `request.wait` allows.
    ///
    /// Fails with `Contended` (for [`Wait::No`]) or `Timeout` (at the deadline)
    /// while someone else holds the lock.
    async fn acquire(&self, request: AcquireRequest) -> Result<Grant>;

    /// Extends a held lock to `ttl` from now; returns the new validity bound,
    /// computed from the instant the request was sent. For a session grant
    /// it confirms the lock is still held by a live session and returns
    /// `None`: the lease's bound stays its session's, which the lease
    /// follows through its [watches](Grant::watches) as every confirmed
    /// heartbeat moves it (see [`SessionSignal::confirm`](crate::SessionSignal::confirm)).
    /// A bound returned here would be the lease's own, and would not move
    /// with the session's.
    async fn extend(&self, claim: &Claim, ttl: Duration) -> Result<Option<Instant>>;

    /// Releases a held lock and wakes its waiters.
    async fn release(&self, claim: &Claim) -> Result<()>;

    /// Reads whether `name` is held and what the server keeps of its holder,
    /// without taking the lock and without waiting for it (one snapshot:
    /// see [`LockStatus`]). A backend that can read it says so in
    /// [`Capabilities::status`]; the default, for one that cannot, is
    /// [`Unsupported`](crate::ErrorKind::Unsupported).
    async fn status(&self, name: &LockName) -> Result<LockStatus> {
        Err(Error::unsupported(
            self.name(),
            format!("backend {} cannot read who holds `{name}`", self.name()),
        ))
    }

    /// The lock server's version as it reports it (`7.0.15`; one per server
    /// for a backend over several independent servers). The default, for a
    /// backend with no server or one that does not tell, is
    /// [`Unsupported`](crate::ErrorKind::Unsupported).
    async fn server_version(&self) -> Result<String> {
        Err(Error::unsupported(
            self.name(),
            format!("backend {} does not report a server version", self.name()),
        ))
    }

    /// Ends this client's connections or sessions. Session grants end with
    /// them; TTL grants expire on their own. Backends with nothing to close
    /// return `Ok`.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
