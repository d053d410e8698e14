//! Automatic renewal: a task per lease that extends it until release or drop.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{LeaseCore, LeaseState};
use crate::error::ErrorKind;
use crate::options::ResolvedRenewal;

/// The running renewal of one lease.
///
/// Stopping it waits for an extension already in flight, so no renewal ever
/// reaches the backend after the release that follows (other libraries'
/// renewal timers outliving the release is a known bug class).
#[derive(Debug)]
pub(crate) struct RenewalTask {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RenewalTask {
    pub(crate) fn spawn(core: Arc<LeaseCore>, policy: ResolvedRenewal) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(renew(core, policy, stopped));
        Self { stop, task }
    }

    /// Stops renewing and waits until the task has finished.
    pub(crate) async fn stop(self) {
        drop(self.stop);
        // A panicked or cancelled renewal task has stopped all the same.
        let _ = self.task.await;
    }
}

async fn renew(core: Arc<LeaseCore>, policy: ResolvedRenewal, mut stopped: oneshot::Receiver<()>) {
    let backend = core.backend.name();
    let min_ttl = core.backend.capabilities().min_ttl;
    let hold_bound = policy
        .max_hold
        .and_then(|max_hold| core.granted_at.checked_add(max_hold));
    loop {
        let delay = match core.state() {
            LeaseState::Held => policy.every,
            // Retry sooner while the lease is still valid.
            LeaseState::Uncertain => policy.every / 2,
            LeaseState::Lost | LeaseState::Released => return,
        };
        tokio::select! {
            biased;
            _ = &mut stopped => return,
            _ = tokio::time::sleep(delay) => {}
        }
        if !core.state().is_valid() {
            return;
        }
        let sent = Instant::now();
        let ttl = match hold_bound {
            None => policy.ttl,
            Some(bound) => {
                let left = bound.saturating_duration_since(sent);
                if left < min_ttl {
                    // The hold bound is reached: let the lease run out.
                    return;
                }
                left.min(policy.ttl)
            }
        };
        let outcome = core.backend.extend(&core.claim, ttl).await;
        core.record_extension(&outcome);
        match outcome {
            Ok(_) => core.instruments.record_renewal(true),
            Err(error) if error.kind() == ErrorKind::NotHeld => {
                core.instruments.record_renewal(false);
                tracing::warn!(backend, lock = %core.claim.name, %error, "renewal found the lock lost");
                return;
            }
            Err(error) => {
                core.instruments.record_renewal(false);
                tracing::warn!(backend, lock = %core.claim.name, %error, "renewal failed; lease is uncertain");
                core.mark_uncertain();
            }
        }
    }
}
