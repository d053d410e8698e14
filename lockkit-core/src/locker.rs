//! The handle applications hold: acquire, try_acquire, with_lock, instrumented once.

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::backend::{AcquireRequest, Claim, LockBackend, Wait};
use crate::capabilities::Capabilities;
use crate::error::{Error, ErrorKind, Result};
use crate::lease::{Lease, LeaseCore, LeaseView};
use crate::life::Life;
use crate::memory::MemoryBackend;
use crate::name::LockName;
use crate::options::Acquire;
use crate::owner::OwnerTokens;
use crate::repeat::REPEAT_FOR;
use crate::status::LockStatus;
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
    life: Arc<Life<LeaseCore>>,
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
            life: Arc::new(Life::new()),
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
                let why = if self.life.is_closed() {
                    " (its client was closed)"
                } else {
                    ""
                };
                let error = Error::not_held(
                    self.backend.name(),
                    "with_lock",
                    name,
                    format_args!(
                        "it was {state:?}{why} before the work finished; the work was cancelled"
                    ),
                );
                // Owner-checked: frees whatever is left, never another holder's lock.
                let _ = lease.release().await;
                Err(error)
            }
        }
    }

    /// Reads whether `name` is held and what the server keeps of its holder
    /// — fencing token, remaining TTL or session, since when, who — without
    /// taking it or waiting for it. A snapshot for diagnosing and reporting:
    /// the lock may change hands right after.
    ///
    /// Errors: [`InvalidInput`](ErrorKind::InvalidInput) for a bad name,
    /// [`Unsupported`](ErrorKind::Unsupported) where the backend cannot read
    /// it ([`Capabilities::status`] is false), and the backend's own
    /// errors. Runs in a `lockkit.status` span.
    pub async fn status(&self, name: &str) -> Result<LockStatus> {
        let backend_name = self.backend.name();
        if self.life.is_closed() {
            return Err(self.life.closed_error(backend_name));
        }
        let lock = LockName::new(name)?;
        let span = tracing::info_span!("lockkit.status", backend = backend_name, lock = name);
        self.backend.status(&lock).instrument(span).await
    }

    /// The lock server's version as it reports it;
    /// [`Unsupported`](ErrorKind::Unsupported) where there is no server
    /// (memory) or it does not tell.
    pub async fn server_version(&self) -> Result<String> {
        if self.life.is_closed() {
            return Err(self.life.closed_error(self.backend.name()));
        }
        self.backend.server_version().await
    }

    /// Closes this client (and its clones).
    ///
    /// In order: every acquire still waiting ends with a non-retryable
    /// [`Unavailable`](ErrorKind::Unavailable) error saying the client was
    /// closed (its place in the backend's queue is withdrawn); every held
    /// lease stops renewing, is **released** at the backend (repeated for
    /// up to [`REPEAT_FOR`](crate::REPEAT_FOR) after a transient failure),
    /// and turns [`Lost`](crate::LeaseState::Lost) — its holder did not let
    /// go, so `lost()` fires and a critical section still running stops;
    /// background releases of dropped leases are awaited for up to the same
    /// bound; then the backend closes its connections or sessions. Every
    /// later call fails with that same error. Closing twice is harmless.
    pub async fn close(&self) -> Result<()> {
        let mut outcome = None;
        let first = &mut outcome;
        self.life
            .close_once
            .get_or_init(|| async move { *first = Some(self.close_now().await) })
            .await;
        outcome.unwrap_or(Ok(()))
    }

    /// The one close: waits for the acquires it ends and the releases in
    /// flight, so no undo step meets a closed backend.
    async fn close_now(&self) -> Result<()> {
        let mut releases = tokio::task::JoinSet::new();
        for core in self.life.take_leases() {
            releases.spawn(async move { core.release_at_close().await });
        }
        releases.join_all().await;
        // Acquires woken by close hand their undo steps to the backend;
        // releases already under way finish (each within its own bound).
        if !self.life.background.settle(REPEAT_FOR * 2).await {
            tracing::warn!(
                backend = self.backend.name(),
                "close: releases still running after {:?}; closing anyway",
                REPEAT_FOR * 2
            );
        }
        self.backend.close().await
    }

    /// Whether [`close`](Self::close) was called on this client or a clone.
    pub fn is_closed(&self) -> bool {
        self.life.is_closed()
    }

    async fn acquire_with(&self, name: &str, options: Acquire, wait: Wait) -> Result<Lease> {
        let backend_name = self.backend.name();
        if self.life.is_closed() {
            return Err(self.life.closed_error(backend_name));
        }
        self.life.background.capture();
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
        // Closing drops the backend's acquire, which withdraws it (cancel
        // safety). A free lock is often granted at the first poll: only an
        // acquire that has to wait also listens for close, polled after the
        // acquire in the same poll (no second poll of the acquire).
        // One that waits counts as in flight, so close waits for its undo:
        // declared first, the token is dropped after the acquire, whose drop
        // hands the undo to the backend.
        let mut in_flight = None;
        let mut acquire = pin!(self.backend.acquire(request).instrument(span.clone()));
        let mut closing = pin!(self.life.closing.cancelled());
        let granted = std::future::poll_fn(|context| {
            if let Poll::Ready(granted) = acquire.as_mut().poll(context) {
                return Poll::Ready(granted);
            }
            in_flight.get_or_insert_with(|| self.life.background.in_flight());
            closing
                .as_mut()
                .poll(context)
                .map(|()| Err(self.life.closed_error(backend_name)))
        })
        .await;
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
        let mut grant = granted?;
        span.record("token", grant.token.get());
        let claim = Claim {
            name: lock,
            owner,
            token: grant.token,
            handle: grant.handle.take(),
        };
        Lease::start(
            Arc::clone(&self.backend),
            claim,
            grant,
            answered,
            Arc::clone(&self.instruments),
            Arc::clone(&self.life),
            resolved.renewal,
        )
        .await
        .ok_or_else(|| self.life.closed_error(backend_name))
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
