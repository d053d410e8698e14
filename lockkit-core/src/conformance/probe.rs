//! A real backend wrapped for tests of the logic above it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{
    AcquireRequest, Capabilities, Claim, Error, ErrorKind, Grant, LockBackend, LockName,
    LockStatus, Result, SessionWatch,
};

/// A real backend with its `extend` calls counted, extend failures
/// injectable, its capabilities replaceable and, if asked, its grants put on
/// a session the test drives — for testing renewal, session liveness and
/// configuration checks against a real lock service, not a mock.
#[derive(Debug)]
pub struct ProbedBackend {
    inner: Arc<dyn LockBackend>,
    capabilities: Capabilities,
    session: Option<SessionWatch>,
    extends: watch::Sender<usize>,
    failing_extends: AtomicBool,
    /// How long each extend's reply is held back, in microseconds.
    extend_reply_delay: AtomicU64,
    failing_releases: AtomicBool,
    lost_release_replies: AtomicUsize,
}

impl ProbedBackend {
    /// Wraps `inner`, changing nothing until told to.
    pub fn new(inner: Arc<dyn LockBackend>) -> Self {
        Self {
            capabilities: inner.capabilities().clone(),
            inner,
            session: None,
            extends: watch::Sender::new(0),
            failing_extends: AtomicBool::new(false),
            extend_reply_delay: AtomicU64::new(0),
            failing_releases: AtomicBool::new(false),
            lost_release_replies: AtomicUsize::new(0),
        }
    }

    /// Presents `capabilities` instead of the inner backend's.
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Puts every grant on the session of `session` too, besides whatever
    /// the inner backend's grant lives on: the test suspends, confirms and
    /// ends it through its [`SessionSignal`](crate::SessionSignal), as a
    /// ZooKeeper or etcd backend does with its own.
    pub fn on_session(mut self, session: SessionWatch) -> Self {
        self.session = Some(session);
        self
    }

    /// How many times `extend` has been called.
    pub fn extends(&self) -> usize {
        *self.extends.borrow()
    }

    /// Resolves once `extend` has been called at least `count` times.
    pub async fn extends_reach(&self, count: usize) {
        let mut calls = self.extends.subscribe();
        // The sender lives in `self`, so waiting cannot fail while we borrow it.
        let _ = calls.wait_for(|calls| *calls >= count).await;
    }

    /// While `failing`, `extend` fails with `Unavailable` without reaching the backend.
    pub fn fail_extends(&self, failing: bool) {
        self.failing_extends.store(failing, Ordering::SeqCst);
    }

    /// Each later `extend` reaches the backend at once, but its reply is
    /// held back for `delay`, as over a slow network after the server acted.
    pub fn delay_extend_replies(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.extend_reply_delay.store(micros, Ordering::SeqCst);
    }

    /// The next `count` releases reach the backend, but their replies are
    /// lost: each reports `Unavailable`, as a connection dropped after the
    /// server acted would.
    pub fn lose_release_replies(&self, count: usize) {
        self.lost_release_replies.store(count, Ordering::SeqCst);
    }

    /// While `failing`, `release` fails with `Unavailable` without reaching
    /// the backend, as over a dropped connection.
    pub fn fail_releases(&self, failing: bool) {
        self.failing_releases.store(failing, Ordering::SeqCst);
    }
}

// A wrapper forwards every method, the provided ones (`close`) included:
// one left to its default would skip the wrapped backend's own.
#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl LockBackend for ProbedBackend {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    async fn acquire(&self, request: AcquireRequest) -> Result<Grant> {
        let mut grant = self.inner.acquire(request).await?;
        grant.watches.extend(self.session.clone());
        Ok(grant)
    }

    async fn extend(&self, claim: &Claim, ttl: Duration) -> Result<Option<Instant>> {
        self.extends.send_modify(|calls| *calls += 1);
        if self.failing_extends.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Unavailable,
                self.inner.name(),
                "extend failure injected by ProbedBackend",
            ));
        }
        let extended = self.inner.extend(claim, ttl).await;
        let delay = self.extend_reply_delay.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_micros(delay)).await;
        }
        extended
    }

    async fn release(&self, claim: &Claim) -> Result<()> {
        if self.failing_releases.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Unavailable,
                self.inner.name(),
                "release failure injected by ProbedBackend",
            ));
        }
        let released = self.inner.release(claim).await;
        let lose = self
            .lost_release_replies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if lose {
            return Err(Error::new(
                ErrorKind::Unavailable,
                self.inner.name(),
                "release reply lost by ProbedBackend",
            ));
        }
        released
    }

    async fn status(&self, name: &LockName) -> Result<LockStatus> {
        self.inner.status(name).await
    }

    async fn server_version(&self) -> Result<String> {
        self.inner.server_version().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}
