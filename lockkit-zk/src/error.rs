//! ZooKeeper driver errors, classified by what the caller can do about them.

use std::fmt::Display;
use std::time::Duration;

use lockkit_core::{Error, ErrorKind};
use zookeeper_client::Error as ZkError;

pub(crate) const BACKEND: &str = "zk";

/// Converts a driver error; `what` starts the message, as in
/// ``release `billing:42`: connection to server has lost (…)``.
pub(crate) fn from_zk(what: impl Display, error: ZkError) -> Error {
    let kind = classify(&error);
    let hint = match &error {
        ZkError::AuthFailed | ZkError::NoAuth | ZkError::InvalidAcl => {
            " (check the URL's user and password, and that the chroot's ACL lets that user \
             create and delete children)"
        }
        ZkError::ConnectionLoss | ZkError::NoHosts | ZkError::Timeout | ZkError::Custom(_) => {
            " (servers down or unreachable, or the ensemble has no quorum)"
        }
        ZkError::SessionExpired | ZkError::SessionMoved => {
            " (the session ended: every lock on it is lost)"
        }
        _ => "",
    };
    let retryable = !matches!(
        error,
        ZkError::ClientClosed | ZkError::SessionExpired | ZkError::SessionMoved
    );
    Error::new(kind, BACKEND, format!("{what}: {error}{hint}"))
        .with_retryable(retryable)
        .with_source(error)
}

fn classify(error: &ZkError) -> ErrorKind {
    match error {
        ZkError::ConnectionLoss
        | ZkError::Custom(_)
        | ZkError::NoHosts
        | ZkError::Timeout
        | ZkError::Throttled
        | ZkError::SessionExpired
        | ZkError::SessionMoved
        | ZkError::ClientClosed => ErrorKind::Unavailable,
        ZkError::AuthFailed | ZkError::NoAuth | ZkError::InvalidAcl => ErrorKind::Config,
        _ => ErrorKind::Backend,
    }
}

/// Whether the request may not have reached the server: the connection
/// was lost or no server could take it. (Not a refusal it answered.)
///
/// zookeeper-client fails the requests in flight on a connection that
/// breaks with the socket's own error (`Connection reset by peer`, `Broken
/// pipe`) as `Custom`, the variant it also uses for its other connection
/// failures ("no response from connection"); each of those may have
/// reached the server, or not.
pub(crate) fn is_transient(error: &ZkError) -> bool {
    matches!(
        error,
        ZkError::ConnectionLoss
            | ZkError::NoHosts
            | ZkError::Timeout
            | ZkError::Throttled
            | ZkError::Custom(_)
    )
}

/// Whether `error` says the session is over: expired at the server, moved
/// to another client, or closed.
pub(crate) fn is_session_gone(error: &ZkError) -> bool {
    matches!(
        error,
        ZkError::SessionExpired | ZkError::SessionMoved | ZkError::ClientClosed
    )
}

/// `Unavailable`: no server answered `what` within `timeout`.
pub(crate) fn no_answer(what: impl Display, timeout: Duration) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        BACKEND,
        format!(
            "{what}: no answer within {timeout:?} (response_timeout): servers paused, \
             overloaded or unreachable, or the ensemble has no quorum"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_not_transient() {
        for error in [ZkError::NoNode, ZkError::NodeExists, ZkError::NoAuth] {
            assert!(!is_transient(&error), "{error:?}");
        }
    }
}
