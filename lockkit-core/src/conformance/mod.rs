//! The conformance suite: one `pub async fn` per guarantee of the lock
//! contract, run against every backend.
//!
//! A backend crate runs all of it with one macro call in a test file:
//!
//! ```
//! use lockkit_core::conformance::Target;
//! use lockkit_core::{Locker, MemoryBackend};
//!
//! async fn target() -> Option<impl Target> {
//!     // A network backend reads its server from the environment, and skips
//!     // (or fails, under LOCKKIT_TEST_REQUIRE=1) without it:
//!     // let url = lockkit_testkit::server_from_env("LOCKKIT_TEST_REDIS_URL")?;
//!     let backend = MemoryBackend::new();
//!     Some(move || {
//!         let backend = backend.clone();
//!         async move { Locker::new(backend) }
//!     })
//! }
//!
//! lockkit_core::conformance_suite!(target());
//! # fn main() {}
//! ```
//!
//! The macro expands one `#[tokio::test]` per case on a multi-threaded
//! runtime (the calling crate needs `tokio` with `macros` and
//! `rt-multi-thread`). Time-based cases scale to the backend's
//! [`min_ttl`](crate::Capabilities::min_ttl), never below 100 ms, so the
//! suite takes seconds on memory and under a minute on a real server.
//! Capability-gated cases assert the `Unsupported` path instead of vanishing.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

use crate::locker::Locker;
use crate::owner::OwnerToken;

mod exclusion;
mod fencing;
mod input;
mod lifecycle;
mod liveness;
mod ownership;
mod probe;
mod renewal;
mod status;
mod validity;
mod waiting;

pub use exclusion::*;
pub use fencing::*;
pub use input::*;
pub use lifecycle::*;
pub use liveness::*;
pub use ownership::*;
pub use probe::ProbedBackend;
pub use renewal::*;
pub use status::*;
pub use validity::*;
pub use waiting::*;

/// The lock service under test.
///
/// Every call to [`client`](Self::client) returns a new client — its own
/// connection or session where the backend has them — of the *same* lock
/// service, so clients contend with each other. A closure returning a future
/// of a [`Locker`] is a `Target`.
#[async_trait]
pub trait Target: Send + Sync {
    /// A new client of the service under test.
    async fn client(&self) -> Locker;
}

#[async_trait]
impl<F, Fut> Target for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Locker> + Send,
{
    async fn client(&self) -> Locker {
        self().await
    }
}

/// Durations of the time-based cases, scaled to the backend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// A short TTL the backend honours: `max(min_ttl, 100 ms)`.
    pub(crate) ttl: Duration,
    /// A TTL no case outlives.
    pub(crate) long_ttl: Duration,
}

impl Timing {
    pub(crate) fn of(locker: &Locker) -> Self {
        let ttl = locker
            .capabilities()
            .min_ttl
            .max(Duration::from_millis(100));
        Self {
            ttl,
            long_ttl: (ttl * 100).max(Duration::from_secs(60)),
        }
    }
}

/// A lock name no other case or run uses.
pub(crate) fn unique_name(case: &str) -> String {
    let suffix = OwnerToken::generate().expect("random source").to_hex();
    format!("conformance:{case}:{}", &suffix[..12])
}

/// Expands one `#[tokio::test]` per conformance case.
///
/// `$target` is an expression of type `impl Future<Output = Option<impl Target>>`;
/// `None` skips every case (after `lockkit_testkit::server_from_env` said why).
#[macro_export]
macro_rules! conformance_suite {
    ($target:expr) => {
        $crate::conformance_suite!(@cases $target;
            exclusive_try_acquire,
            release_then_reacquire,
            distinct_names_do_not_contend,
            look_alike_names_are_distinct_locks,
            mutual_exclusion_under_contention,
            thousand_locks_held_at_once,
            with_lock_runs_work_then_releases,
            with_lock_cancels_work_when_the_lease_is_lost,
            stale_owner_cannot_release_or_extend_next_holder,
            extend_after_expiry_is_not_held,
            fencing_tokens_strictly_increase,
            unusual_names_work,
            invalid_names_are_refused,
            invalid_durations_are_refused,
            expiry_frees_the_lock,
            validity_is_measured_from_request_send,
            extend_prolongs_validity,
            an_extension_answered_after_the_bound_leaves_the_lease_lost,
            lost_signal_fires_on_expiry,
            session_bound_limits_validity,
            suspended_session_makes_the_lease_uncertain_until_it_returns,
            waiter_acquires_promptly_after_release,
            waiters_are_served_in_arrival_order,
            wait_deadline_returns_timeout_near_it,
            cancelled_acquire_leaves_nothing_held,
            woken_waiter_cancelled_while_taking_the_lock_leaves_nothing_held,
            dropped_lease_frees_the_lock,
            lease_dropped_on_any_thread_is_released,
            cancelled_release_still_frees_the_lock,
            release_with_a_lost_reply_reports_released,
            close_ends_waits_renewals_and_later_calls,
            close_withdraws_waiters_from_the_queue,
            concurrent_closes_release_everything,
            close_waits_for_a_release_under_way,
            auto_renewal_keeps_the_lease_alive,
            renewal_stops_after_release_and_drop,
            renewal_respects_max_hold,
            unsupported_operations_say_so,
            status_reports_the_holder_without_taking_the_lock,
        );
    };
    (@cases $target:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(target) = $target.await else { return };
                $crate::conformance::$case(&target).await;
            }
        )+
    };
}

/// The claim a lease presents to its backend, to call the backend directly.
pub(crate) fn claim_of(lease: &crate::LeaseView) -> crate::Claim {
    lease.claim().clone()
}

/// Asserts `result` failed with `kind`, and returns the error.
#[track_caller]
pub(crate) fn expect_error<T: std::fmt::Debug>(
    result: crate::Result<T>,
    kind: crate::ErrorKind,
    what: &str,
) -> crate::Error {
    match result {
        Ok(value) => panic!("{what}: expected a {kind} error, got Ok({value:?})"),
        Err(error) => {
            assert_eq!(error.kind(), kind, "{what}: wrong kind of error: {error}");
            error
        }
    }
}
