//! One request to the cluster, as every part of the backend sends it.

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff};
use lockkit_core::repeat::{self, Repeated};
use lockkit_core::{Error, Result};

use crate::affinity::Affinity;
use crate::error::{from_etcd, no_answer};

/// Sends a request made by `call` — one that is safe to send again — and
/// sends it again while it fails before an answer, for up to
/// `response_timeout` (pauses from 10 ms doubling to 250 ms). Each attempt
/// gets half of that, so a member that hangs — its connection open,
/// nothing answering — still leaves time for an attempt on another; and a
/// failure first takes the backend off a pinned leader (see [`Affinity`]).
/// `map` turns a driver error into lockkit's, for what the caller must tell
/// apart (a session lease that is gone).
pub(crate) async fn answered<T, F, Fut>(
    what: &str,
    response_timeout: Duration,
    affinity: &Affinity,
    mut call: F,
    map: impl Fn(etcd_client::Error) -> Error,
) -> Repeated<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    let attempt = response_timeout / 2;
    repeat::until_answered(Instant::now() + response_timeout, || {
        let sent = call();
        async {
            let outcome: Result<T> = match tokio::time::timeout(attempt, sent).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(error)) => Err(map(error)),
                Err(_) => Err(no_answer(what, response_timeout)),
            };
            if outcome.as_ref().is_err_and(repeat::is_transient) {
                affinity.spread().await;
            }
            outcome
        }
    })
    .await
}

/// [`answered`] with the driver's errors as they come, for `what`.
pub(crate) async fn answer<T, F, Fut>(
    what: &str,
    response_timeout: Duration,
    affinity: &Affinity,
    call: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    answered(what, response_timeout, affinity, call, |error| {
        from_etcd(what, error)
    })
    .await
    .outcome
}

/// The next pause of `pauses` (see [`repeat::background_pauses`]).
pub(crate) async fn pause(pauses: &mut ExponentialBackoff) {
    tokio::time::sleep(pauses.next().unwrap_or(Duration::from_millis(500))).await;
}

/// A fresh sequence of [`repeat::background_pauses`].
pub(crate) fn fresh_pauses() -> ExponentialBackoff {
    repeat::background_pauses().build()
}
