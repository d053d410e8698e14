//! etcd driver errors, classified by what the caller can do about them.

use std::fmt::Display;

use etcd_client::Error as EtcdError;
use lockkit_core::{Error, ErrorKind};

pub(crate) const BACKEND: &str = "etcd";

/// gRPC status codes (grpc/doc/statuscodes.md) that etcd answers with.
mod code {
    pub(super) const INVALID_ARGUMENT: i32 = 3;
    pub(super) const NOT_FOUND: i32 = 5;
    pub(super) const PERMISSION_DENIED: i32 = 7;
    pub(super) const FAILED_PRECONDITION: i32 = 9;
    pub(super) const OUT_OF_RANGE: i32 = 11;
    pub(super) const UNAUTHENTICATED: i32 = 16;
}

/// Converts a driver error; `what` starts the message, as in
/// ``release `billing:42`: grpc request error: status: Unavailable, …``.
pub(crate) fn from_etcd(what: impl Display, error: EtcdError) -> Error {
    let kind = classify(&error);
    let hint = match (&error, kind) {
        (EtcdError::InvalidUri(_) | EtcdError::InvalidArgs(_) | EtcdError::EndpointError(_), _) => {
            " (check the members' host:port form in the URL; an IPv6 address goes in brackets)"
        }
        (_, ErrorKind::Config) => {
            " (check the URL's user and password, and that the user's role may read and \
             write the namespace's keys and grant leases)"
        }
        (_, ErrorKind::Unavailable) => {
            " (members down or unreachable, or the cluster has no leader)"
        }
        _ => "",
    };
    Error::new(kind, BACKEND, format!("{what}: {error}{hint}")).with_source(error)
}

/// A driver error for a call that needed no answer from the server's
/// lease: the session lease was gone (expired or revoked).
pub(crate) fn is_lease_gone(error: &EtcdError) -> bool {
    match error {
        EtcdError::GRpcStatus(status) => {
            status.code() as i32 == code::NOT_FOUND && status.message().contains("lease not found")
        }
        EtcdError::LeaseKeepAliveError(message) => message.contains("lease not found"),
        _ => false,
    }
}

fn classify(error: &EtcdError) -> ErrorKind {
    match error {
        EtcdError::GRpcStatus(status) => match status.code() as i32 {
            code::UNAUTHENTICATED | code::PERMISSION_DENIED => ErrorKind::Config,
            code::INVALID_ARGUMENT | code::OUT_OF_RANGE | code::FAILED_PRECONDITION => {
                ErrorKind::Backend
            }
            code::NOT_FOUND => ErrorKind::Backend,
            // Unavailable, DeadlineExceeded, Aborted, Cancelled, Unknown
            // (a transport failure seen by the client), Internal: the
            // member may answer again, or another will.
            _ => ErrorKind::Unavailable,
        },
        EtcdError::TransportError(_)
        | EtcdError::IoError(_)
        | EtcdError::WatchError(_)
        | EtcdError::LeaseKeepAliveError(_) => ErrorKind::Unavailable,
        EtcdError::InvalidArgs(_)
        | EtcdError::InvalidUri(_)
        | EtcdError::EndpointError(_)
        | EtcdError::InvalidMetadataValue(_) => ErrorKind::Config,
        _ => ErrorKind::Backend,
    }
}

/// `Unavailable`: no member answered `what` within `timeout`.
pub(crate) fn no_answer(what: impl Display, timeout: std::time::Duration) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        BACKEND,
        format!("{what}: no answer within {timeout:?} (response_timeout): members paused, overloaded or unreachable"),
    )
}
