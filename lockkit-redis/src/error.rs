//! Redis driver errors, classified by what the caller can do about them.

use std::fmt::Display;

use lockkit_core::{Error, ErrorKind};
use redis::{RedisError, ServerErrorKind};

pub(crate) const BACKEND: &str = "redis";

/// Converts a driver error; `server` and `what` start the message, as in
/// ``127.0.0.1:6379: release `billing:42`: connection refused``.
pub(crate) fn from_redis(server: &str, what: impl Display, error: RedisError) -> Error {
    let kind = classify(&error);
    let hint = match kind {
        ErrorKind::Unavailable
            if error.kind() == redis::ErrorKind::Server(ServerErrorKind::ReadOnly) =>
        {
            " (the server is a read-only replica now: a failover moved the primary; \
             point url at the new primary)"
        }
        ErrorKind::Unavailable if error.is_timeout() => {
            " (no reply in time: server paused, overloaded or unreachable)"
        }
        ErrorKind::Config => " (check the URL's user, password and database, and the user's ACL)",
        _ => "",
    };
    Error::new(kind, BACKEND, format!("{server}: {what}: {error}{hint}")).with_source(error)
}

fn classify(error: &RedisError) -> ErrorKind {
    // `min-replicas-to-write` not met: writes resume when replicas return.
    if error.code() == Some("NOREPLICAS") {
        return ErrorKind::Unavailable;
    }
    if error.is_timeout()
        || error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
    {
        return ErrorKind::Unavailable;
    }
    match error.kind() {
        redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig => {
            ErrorKind::Config
        }
        redis::ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::MasterDown
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            // A replica refusing writes: the URL names a replica, or a
            // failover is under way.
            | ServerErrorKind::ReadOnly,
        ) => ErrorKind::Unavailable,
        redis::ErrorKind::Server(ServerErrorKind::NoPerm) => ErrorKind::Config,
        _ => ErrorKind::Backend,
    }
}

/// A reply the scripts never give: someone changed the keys by hand, or
/// another program shares the namespace.
pub(crate) fn unexpected_reply(
    server: &str,
    what: impl Display,
    reply: impl std::fmt::Debug,
) -> Error {
    Error::new(
        ErrorKind::Backend,
        BACKEND,
        format!(
            "{server}: {what}: unexpected reply {reply:?}; is another program writing to this namespace?"
        ),
    )
}
