//! The metric names lockkit records, stable across releases, and their recording.
//!
//! Every metric carries the label `backend` (`memory`, `redis`, …). Nothing
//! is recorded unless the application installs a `metrics` recorder.

use std::time::Duration;

use metrics::{Key, Label, Level, Metadata};

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
    Acquired = 0,
    Contended = 1,
    Timeout = 2,
    Error = 3,
}

impl AcquireOutcome {
    const ALL: [Self; 4] = [Self::Acquired, Self::Contended, Self::Timeout, Self::Error];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Acquired => "acquired",
            Self::Contended => "contended",
            Self::Timeout => "timeout",
            Self::Error => "error",
        }
    }
}

/// The keys of one backend's metrics, built once per [`Locker`](crate::Locker):
/// recording then neither allocates nor hashes a key, with or without a
/// recorder installed.
pub(crate) struct Instruments {
    /// By outcome, in the order of [`AcquireOutcome`].
    acquires: [Key; 4],
    /// By outcome, in the order of [`AcquireOutcome`].
    waits: [Key; 4],
    contention: Key,
    hold: Key,
    renewals: Key,
    renewal_failures: Key,
    losses: Key,
}

/// What the `counter!` and `histogram!` macros would pass for this module.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

impl Instruments {
    pub(crate) fn new(backend: &'static str) -> Self {
        let by_backend =
            |name: &'static str| Key::from_parts(name, vec![Label::new("backend", backend)]);
        let by_outcome = |name: &'static str| {
            AcquireOutcome::ALL.map(|outcome| {
                Key::from_parts(
                    name,
                    vec![
                        Label::new("backend", backend),
                        Label::new("outcome", outcome.as_str()),
                    ],
                )
            })
        };
        Self {
            acquires: by_outcome(ACQUIRE_TOTAL),
            waits: by_outcome(ACQUIRE_WAIT_SECONDS),
            contention: by_backend(CONTENTION_TOTAL),
            hold: by_backend(HOLD_SECONDS),
            renewals: by_backend(RENEWALS_TOTAL),
            renewal_failures: by_backend(RENEWAL_FAILURES_TOTAL),
            losses: by_backend(LOSSES_TOTAL),
        }
    }

    pub(crate) fn record_acquire(
        &self,
        outcome: AcquireOutcome,
        waited: Duration,
        contended: bool,
    ) {
        let index = outcome as usize;
        metrics::with_recorder(|recorder| {
            recorder
                .register_counter(&self.acquires[index], &METADATA)
                .increment(1);
            recorder
                .register_histogram(&self.waits[index], &METADATA)
                .record(waited.as_secs_f64());
            if contended {
                recorder
                    .register_counter(&self.contention, &METADATA)
                    .increment(1);
            }
        });
    }

    pub(crate) fn record_hold(&self, held: Duration) {
        metrics::with_recorder(|recorder| {
            recorder
                .register_histogram(&self.hold, &METADATA)
                .record(held.as_secs_f64());
        });
    }

    pub(crate) fn record_renewal(&self, succeeded: bool) {
        let key = if succeeded {
            &self.renewals
        } else {
            &self.renewal_failures
        };
        metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA).increment(1));
    }

    pub(crate) fn record_loss(&self) {
        metrics::with_recorder(|recorder| {
            recorder
                .register_counter(&self.losses, &METADATA)
                .increment(1);
        });
    }
}
