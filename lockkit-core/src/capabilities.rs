//! What a backend promises, as plain fields an application (or `require`) can check.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};

/// Why a lock is safe to rely on (Kleppmann's two reasons to lock).
///
/// Ordered: `Efficiency < Correctness`, so a configuration's `require` can
/// refuse any backend below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum SafetyClass {
    /// May, very rarely, admit two holders (failover, long pauses): fine for
    /// avoiding duplicate work, not for protecting data that must not be corrupted.
    Efficiency,
    /// Never admits two holders within the backend's own guarantees; pair it
    /// with fencing at the protected resource.
    Correctness,
}

impl SafetyClass {
    /// The lowercase name used in configuration (`efficiency`, `correctness`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Efficiency => "efficiency",
            Self::Correctness => "correctness",
        }
    }
}

impl fmt::Display for SafetyClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far the "strictly increasing" promise of fencing tokens reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FencingGuarantee {
    /// Tokens increase across every grant, through failover and restart.
    Linearizable,
    /// Tokens increase while the server's data survives; a failover to a
    /// replica that missed an increment, or a restart without persistence,
    /// can hand out a token again.
    BestEffort,
}

/// What keeps a grant alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeaseModel {
    /// The grant expires after its TTL unless extended.
    Ttl,
    /// The grant lives as long as the client's session; the session's own
    /// keep-alive renews it and its end releases it.
    Session,
}

/// How a blocked acquire learns that the lock may be free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WaitMode {
    /// Woken by a release notification (plus a timer at the holder's expiry).
    Notify,
    /// The server queues the waiter and grants the lock itself.
    ServerQueue,
    /// Retries after a delay; no notification exists.
    Poll,
}

/// In which order waiters get the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fairness {
    /// Waiters acquire in the order they started waiting.
    Fifo,
    /// Any waiter may win; starvation is unlikely but possible.
    Unordered,
}

/// What one backend can do and promise.
///
/// A plain record: the conformance suite and applications read its fields.
/// Backends build it with [`Capabilities::new`] and set the remaining fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Why the lock is safe to rely on.
    pub safety: SafetyClass,
    /// How far fencing tokens are ordered.
    pub fencing: FencingGuarantee,
    /// What keeps a grant alive.
    pub lease: LeaseModel,
    /// How waiters learn the lock may be free.
    pub waiting: WaitMode,
    /// In which order waiters win.
    pub fairness: Fairness,
    /// Whether a held lock's validity can be extended (`Lease::extend`, auto-renewal).
    pub extend: bool,
    /// The shortest TTL the backend honours; shorter ones are refused.
    pub min_ttl: Duration,
    /// The longest TTL the backend honours; longer ones are refused.
    pub max_ttl: Duration,
    /// Clock drift allowance the backend subtracts from every validity
    /// window, beside [`drift_ppm`](Self::drift_ppm); see [`drift_for`](Self::drift_for).
    pub drift: Duration,
    /// A further allowance proportional to the TTL, in millionths of it
    /// (Redlock's drift factor: 0.01 is 10,000). 0 for most backends.
    pub drift_ppm: u32,
    /// Whether the server expires this backend's sessions after a timeout
    /// (a ZooKeeper session, an etcd lease): its session grants then carry
    /// the session's bound (see [`SessionSignal::confirm`](crate::SessionSignal::confirm)),
    /// and the conformance suite refuses a session lease without one. False
    /// for TTL backends and for sessions that live until their connection
    /// closes (PostgreSQL).
    pub session_timeout: bool,
    /// Whether [`LockBackend::status`](crate::LockBackend::status) can read
    /// a lock's state; `Unsupported` when false.
    pub status: bool,
}

impl Capabilities {
    /// Capabilities with the given promises, extension supported, TTLs from
    /// 1 ms to one year, no drift allowance and no status reads; adjust the
    /// fields that differ.
    pub fn new(
        safety: SafetyClass,
        fencing: FencingGuarantee,
        lease: LeaseModel,
        waiting: WaitMode,
        fairness: Fairness,
    ) -> Self {
        Self {
            safety,
            fencing,
            lease,
            waiting,
            fairness,
            extend: true,
            min_ttl: Duration::from_millis(1),
            max_ttl: Duration::from_secs(365 * 24 * 60 * 60),
            drift: Duration::ZERO,
            drift_ppm: 0,
            session_timeout: false,
            status: false,
        }
    }

    /// The drift allowance of a grant for `ttl`: [`drift`](Self::drift)
    /// plus [`drift_ppm`](Self::drift_ppm) millionths of `ttl`. A TTL
    /// grant's validity ends no earlier than its request's send + `ttl` −
    /// this.
    pub fn drift_for(&self, ttl: Duration) -> Duration {
        self.drift + ttl.mul_f64(f64::from(self.drift_ppm) / 1e6)
    }

    /// Refuses a TTL this backend cannot honour — zero, below
    /// [`min_ttl`](Self::min_ttl) or above [`max_ttl`](Self::max_ttl) — with
    /// [`InvalidInput`](crate::ErrorKind::InvalidInput) naming `field`.
    pub fn check_ttl(&self, field: &str, ttl: Duration, backend: &'static str) -> Result<()> {
        if ttl.is_zero() {
            return Err(Error::invalid_input(
                backend,
                format!("{field} must be greater than zero"),
            ));
        }
        if ttl < self.min_ttl {
            return Err(Error::invalid_input(
                backend,
                format!(
                    "{field} {ttl:?} is below this backend's minimum of {:?}",
                    self.min_ttl
                ),
            ));
        }
        if ttl > self.max_ttl {
            return Err(Error::invalid_input(
                backend,
                format!(
                    "{field} {ttl:?} is above this backend's maximum of {:?}",
                    self.max_ttl
                ),
            ));
        }
        Ok(())
    }
}

impl std::str::FromStr for SafetyClass {
    type Err = Error;

    /// Parses `efficiency` or `correctness`, as written in configuration.
    fn from_str(text: &str) -> Result<Self> {
        match text {
            "efficiency" => Ok(Self::Efficiency),
            "correctness" => Ok(Self::Correctness),
            other => Err(Error::new(
                crate::ErrorKind::Config,
                "lockkit",
                format!("require: expected `efficiency` or `correctness`, got `{other}`"),
            )),
        }
    }
}
