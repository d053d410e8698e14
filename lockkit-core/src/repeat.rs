//! Repeating an owner-checked operation after a transient failure.
//!
//! Release, extend, and a waiter leaving its queue act only for the
//! caller's owner token, so sending one twice changes nothing the first did
//! not: it is safe to repeat. A failure before the server answered — a
//! connection dropped by a network blip, a load balancer's idle timeout, a
//! server restart — is therefore repeated on the reconnected connection
//! within a bound, rather than reported as final while the lock stays held
//! for its whole TTL.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};

use crate::error::{Error, ErrorKind, Result};

/// How long an owner-checked operation is repeated after a transient
/// failure, at most: 5 s. A lease's release and extend stop sooner, at the
/// end of its validity, after which there is nothing left to release.
pub const REPEAT_FOR: Duration = Duration::from_secs(5);

/// The first pause between attempts; it doubles, with jitter, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);

/// The longest pause between attempts.
const MAX_PAUSE: Duration = Duration::from_millis(250);

/// The outcome of a repeated operation.
#[derive(Debug)]
pub struct Repeated<T> {
    /// The last attempt's outcome.
    pub outcome: Result<T>,
    /// How many attempts were sent (at least 1). Above 1, an earlier attempt
    /// may have taken effect before its reply was lost.
    pub attempts: u32,
}

/// The pauses between attempts at work a backend does in the background
/// for as long as it takes — a stream or watch opened again, a node or key
/// no grant uses deleted: 50 ms doubling, with jitter, to 500 ms, without
/// end. The caller stops when its session ends or its backend closes.
pub fn background_pauses() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_millis(500))
        .with_jitter()
        .without_max_times()
}

/// Whether `error` may have happened before the server acted: the server
/// could not be reached or did not answer, and trying again may help.
pub fn is_transient(error: &Error) -> bool {
    error.kind() == ErrorKind::Unavailable && error.is_retryable()
}

/// Runs the owner-checked `operation`, repeating it while it fails
/// [transiently](is_transient), with pauses from 10 ms doubling (with
/// jitter) to 250 ms, and starting no attempt after `until`.
///
/// So it returns within `until` plus one attempt (each bounded by the
/// backend's own reply timeout) plus one pause. Only for operations that
/// are safe to repeat: they act only for the caller's owner token.
pub async fn until_answered<T, F, Fut>(until: Instant, mut operation: F) -> Repeated<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    // The first attempt goes straight out: the common case builds no
    // backoff at all.
    let first = operation().await;
    match &first {
        Err(error) if is_transient(error) && Instant::now() < until => {}
        _ => {
            return Repeated {
                outcome: first,
                attempts: 1,
            }
        }
    }
    if let Err(error) = &first {
        tracing::debug!(%error, "owner-checked operation failed before an answer; repeating it");
    }
    tokio::time::sleep(FIRST_PAUSE).await;
    let attempts = AtomicU32::new(1);
    let backoff = ExponentialBuilder::default()
        .with_min_delay(FIRST_PAUSE)
        .with_max_delay(MAX_PAUSE)
        .with_jitter()
        .without_max_times();
    let outcome = (|| {
        attempts.fetch_add(1, Ordering::Relaxed);
        operation()
    })
    .retry(backoff)
    .sleep(tokio::time::sleep)
    .when(|error| is_transient(error) && Instant::now() < until)
    .notify(|error, pause| {
        tracing::debug!(%error, ?pause, "owner-checked operation failed before an answer; repeating it");
    })
    .await;
    Repeated {
        outcome,
        attempts: attempts.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> Error {
        Error::new(ErrorKind::Unavailable, "memory", "connection reset")
    }

    #[tokio::test]
    async fn a_transient_failure_is_repeated_until_answered() {
        let mut failures = 2;
        let repeated = until_answered(Instant::now() + REPEAT_FOR, || {
            let failed = failures > 0;
            failures -= 1;
            async move {
                if failed {
                    Err(unavailable())
                } else {
                    Ok(7)
                }
            }
        })
        .await;
        assert_eq!(repeated.outcome.unwrap(), 7);
        assert_eq!(repeated.attempts, 3);
    }

    #[tokio::test]
    async fn an_answer_or_a_final_error_is_not_repeated() {
        let repeated = until_answered(Instant::now() + REPEAT_FOR, || async {
            Err::<(), _>(Error::new(ErrorKind::NotHeld, "memory", "gone"))
        })
        .await;
        assert_eq!(repeated.attempts, 1);
        let closed = || unavailable().with_retryable(false);
        let repeated = until_answered(Instant::now() + REPEAT_FOR, || async {
            Err::<(), _>(closed())
        })
        .await;
        assert_eq!(repeated.attempts, 1);
    }

    #[tokio::test]
    async fn no_attempt_starts_after_the_bound() {
        let started = Instant::now();
        let bound = Duration::from_millis(100);
        let repeated =
            until_answered(started + bound, || async { Err::<(), _>(unavailable()) }).await;
        assert!(repeated.attempts > 1);
        assert!(started.elapsed() < bound + MAX_PAUSE * 2);
        assert_eq!(repeated.outcome.unwrap_err().kind(), ErrorKind::Unavailable);
    }
}
