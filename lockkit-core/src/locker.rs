//! The handle applications hold: acquire, try_acquire, with_lock, instrumented once.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::backend::{AcquireRequest, Claim, LockBackend, Wait};
use crate::capabilities::Capabilities;
use crate::error::{Error, ErrorKind, Result};
use crate::lease::{Lease, LeaseView};
use crate::memory::MemoryBackend;
use crate::name::LockName;
use crate::options::Acquire;
use crate::owner::OwnerTokens;
use crate::telemetry::{AcquireOutcome, Instruments};

/// The TTL used when [`Acquire`] names none and the configuration sets no other.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// A lock client over one backend. Cheap to clone; clones share the backend.
///
/// Every operation runs in a `tracing` span (`lockkit.acquire`,
/// `lockkit.with_lock`) and feeds the metrics named in
/// [`telemetry`](crate::telemetry).
#[derive(Clone)]
pub struct Locker {
    backend: Arc<dyn LockBackend>,
    default_ttl: Duration,
    tokens: Arc<OwnerTokens>,
    instruments: Arc<Instruments>,
}

impl Locker {
    /// A locker over `backend`.
    pub fn new(backend: impl LockBackend) -> Self {
        Self::from_backend(Arc::new(backend))
    }

    /// A locker over an already shared backend.
    pub fn from_backend(backend: Arc<dyn LockBackend>) -> Self {
        Self {
            instruments: Arc::new(Instruments::new(backend.name())),
            backend,
            default_ttl: DEFAULT_TTL,
            tokens: Arc::new(OwnerTokens::new()),
        }
    }

    /// A locker over a new in-process [`MemoryBackend`].
    pub fn memory() -> Self {
        Self::new(MemoryBackend::new())
    }

    /// Uses `ttl` for acquires whose options name no TTL; it is checked
    /// against the backend's limits at each acquire.
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The TTL used when the acquire options name none.
    pub fn default_ttl(&self) -> Duration {
        self.default_ttl
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn LockBackend> {
        &self.backend
    }

    /// What the backend can do and promise.
    pub fn capabilities(&self) -> &Capabilities {
        self.backend.capabilities()
    }

    /// Acquires `name`, waiting while it is held — as long as it takes, or
    /// up to [`Acquire::wait`], then [`Timeout`](ErrorKind::Timeout).
    ///
    /// Cancellation-safe: dropping the future leaves no lock held beyond the
    /// backend's TTL or session.
    pub async fn acquire(&self, name: &str, options: Acquire) -> Result<Lease> {
        let wait = options.wait_value().map_or(Wait::Forever, Wait::at_most);
        self.acquire_with(name, options, wait).await
    }

    /// Acquires `name` if it is free right now; `Ok(None)` if someone else holds it.
    pub async fn try_acquire(&self, name: &str, options: Acquire) -> Result<Option<Lease>> {
        match self.acquire_with(name, options, Wait::No).await {
            Ok(lease) => Ok(Some(lease)),
            Err(error) if error.kind() == ErrorKind::Contended => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Runs `work` while holding `name`, then releases it.
    ///
    /// `work` receives a [`LeaseView`] (for the fencing token). If the lease
    /// is lost before `work` finishes, `work` is dropped — the critical
    /// section never runs on without the lock — and the result is
    /// [`NotHeld`](ErrorKind::NotHeld). A release that fails after `work`
    /// finished is logged; the work's output is returned.
    pub async fn with_lock<F, Fut, T>(&self, name: &str, options: Acquire, work: F) -> Result<T>
    where
        F: FnOnce(LeaseView) -> Fut,
        Fut: Future<Output = T>,
    {
        let lease = self.acquire(name, options).await?;
        let span = tracing::info_span!(
            "lockkit.with_lock",
            backend = self.backend.name(),
            lock = name,
            token = lease.fencing_token().get(),
        );
        let work = work(lease.view());
        let finished = async {
            tokio::select! {
                biased;
                state = lease.lost() => Err(state),
                value = work => Ok(value),
            }
        }
        .instrument(span)
        .await;
        match finished {
            Ok(value) => {
                if let Err(error) = lease.release().await {
                    tracing::warn!(%error, lock = name, "release after with_lock failed");
                }
                Ok(value)
            }
            Err(state) => {
                let error = Error::new(
                    ErrorKind::NotHeld,
                    self.backend.name(),
                    format!("lock `{name}` was {state:?} before the work finished; the work was cancelled"),
                );
                // Owner-checked: frees whatever is left, never another holder's lock.
                let _ = lease.release().await;
                Err(error)
            }
        }
    }

    /// Ends the backend's connections or sessions (session leases end with them).
    pub async fn close(&self) -> Result<()> {
        self.backend.close().await
    }

    async fn acquire_with(&self, name: &str, options: Acquire, wait: Wait) -> Result<Lease> {
        let backend_name = self.backend.name();
        let lock = LockName::new(name)?;
        let resolved = options.resolve(self.capabilities(), self.default_ttl, backend_name)?;
        let owner = self.tokens.next()?;
        let span = tracing::info_span!(
            "lockkit.acquire",
            backend = backend_name,
            lock = name,
            outcome = tracing::field::Empty,
            token = tracing::field::Empty,
            waited_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        let request = AcquireRequest {
            name: lock.clone(),
            owner,
            ttl: resolved.ttl,
            wait,
        };
        let granted = self.backend.acquire(request).instrument(span.clone()).await;
        let answered = Instant::now();
        let waited = answered - started;
        let outcome = match &granted {
            Ok(_) => AcquireOutcome::Acquired,
            Err(error) => match error.kind() {
                ErrorKind::Contended => AcquireOutcome::Contended,
                ErrorKind::Timeout => AcquireOutcome::Timeout,
                _ => AcquireOutcome::Error,
            },
        };
        let contended = match &granted {
            Ok(grant) => grant.contended,
            Err(_) => matches!(outcome, AcquireOutcome::Contended | AcquireOutcome::Timeout),
        };
        self.instruments.record_acquire(outcome, waited, contended);
        span.record("outcome", outcome.as_str());
        span.record("waited_ms", waited.as_secs_f64() * 1e3);
        let grant = granted?;
        span.record("token", grant.token.get());
        let claim = Claim {
            name: lock,
            owner,
            token: grant.token,
        };
        Ok(Lease::start(
            Arc::clone(&self.backend),
            claim,
            grant,
            answered,
            Arc::clone(&self.instruments),
            resolved.renewal,
        ))
    }
}

impl From<Arc<dyn LockBackend>> for Locker {
    fn from(backend: Arc<dyn LockBackend>) -> Self {
        Self::from_backend(backend)
    }
}

impl fmt::Debug for Locker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locker")
            .field("backend", &self.backend)
            .field("default_ttl", &self.default_ttl)
            .finish()
    }
}
