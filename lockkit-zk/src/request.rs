//! One request to the ensemble, as every part of the backend sends it.

use std::future::Future;
use std::time::{Duration, Instant};

use lockkit_core::repeat::{self, Repeated};
use zookeeper_client::{Client, Error as ZkError};

use crate::error::{from_zk, is_session_gone, is_transient, no_answer};
use crate::session::Session;

/// What the server answered: the value, or its refusal (`NoNode`,
/// `NodeExists`, …) for the caller to read.
pub(crate) type Answer<T> = std::result::Result<T, ZkError>;

/// Sends a request made by `call` on the session's client — one that is
/// safe to send again — and sends it again while it fails before an answer
/// (the connection lost, a server moving the session), for up to
/// `response_timeout`, each attempt bounded by half of it. A session found
/// gone ends it (every lease on it Lost) and fails at once.
pub(crate) async fn answered<T, F, Fut>(
    what: &str,
    session: &Session,
    response_timeout: Duration,
    mut call: F,
) -> Repeated<Answer<T>>
where
    F: FnMut(Client) -> Fut,
    Fut: Future<Output = Answer<T>>,
{
    let attempt = response_timeout / 2;
    repeat::until_answered(Instant::now() + response_timeout, || {
        let client = session.client();
        let sent = client.map(&mut call);
        async move {
            match tokio::time::timeout(attempt, sent?).await {
                Ok(Err(error)) if is_session_gone(&error) => {
                    session.end();
                    Err(from_zk(what, error))
                }
                Ok(Err(error)) if is_transient(&error) => Err(from_zk(what, error)),
                Ok(answer) => Ok(answer),
                Err(_) => Err(no_answer(what, response_timeout)),
            }
        }
    })
    .await
}
