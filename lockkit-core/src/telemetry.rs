//! The metric names lockkit records, stable across releases, and their recording.
//!
//! Every metric carries the label `backend` (`memory`, `redis`, …). Nothing
//! is recorded unless the application installs a `metrics` recorder.

use std::time::Duration;

/// Counter: acquire attempts by `outcome` (`acquired`, `contended`, `timeout`, `error`).
pub const ACQUIRE_TOTAL: &str = "lockkit_acquire_total";
/// Histogram, seconds: time from the start of an acquire to its outcome, by `outcome`.
pub const ACQUIRE_WAIT_SECONDS: &str = "lockkit_acquire_wait_seconds";
/// Counter: acquires that found the lock held by someone else.
pub const CONTENTION_TOTAL: &str = "lockkit_contention_total";
/// Histogram, seconds: how long a lease was held, from grant to release, drop or loss.
pub const HOLD_SECONDS: &str = "lockkit_hold_seconds";
/// Counter: successful automatic renewals.
pub const RENEWALS_TOTAL: &str = "lockkit_renewals_total";
/// Counter: failed automatic renewals (each failure, not each lease).
pub const RENEWAL_FAILURES_TOTAL: &str = "lockkit_renewal_failures_total";
/// Counter: leases that ended lost (expired, taken over or session gone) rather than released.
pub const LOSSES_TOTAL: &str = "lockkit_losses_total";

/// How an acquire ended, as the `outcome` label and span field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcquireOutcome {
    Acquired,
    Contended,
    Timeout,
    Error,
}

impl AcquireOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Acquired => "acquired",
            Self::Contended => "contended",
            Self::Timeout => "timeout",
            Self::Error => "error",
        }
    }
}

pub(crate) fn record_acquire(
    backend: &'static str,
    outcome: AcquireOutcome,
    waited: Duration,
    contended: bool,
) {
    let outcome = outcome.as_str();
    metrics::counter!(ACQUIRE_TOTAL, "backend" => backend, "outcome" => outcome).increment(1);
    metrics::histogram!(ACQUIRE_WAIT_SECONDS, "backend" => backend, "outcome" => outcome)
        .record(waited.as_secs_f64());
    if contended {
        metrics::counter!(CONTENTION_TOTAL, "backend" => backend).increment(1);
    }
}

pub(crate) fn record_hold(backend: &'static str, held: Duration) {
    metrics::histogram!(HOLD_SECONDS, "backend" => backend).record(held.as_secs_f64());
}

pub(crate) fn record_renewal(backend: &'static str, succeeded: bool) {
    let name = if succeeded {
        RENEWALS_TOTAL
    } else {
        RENEWAL_FAILURES_TOTAL
    };
    metrics::counter!(name, "backend" => backend).increment(1);
}

pub(crate) fn record_loss(backend: &'static str) {
    metrics::counter!(LOSSES_TOTAL, "backend" => backend).increment(1);
}
