//! PostgreSQL driver errors, classified by what the caller can do about them.

use std::fmt::Display;

use lockkit_core::{Error, ErrorKind};
use tokio_postgres::error::SqlState;

pub(crate) const BACKEND: &str = "postgres";

/// Converts a driver error; `server` and `what` start the message, as in
/// ``127.0.0.1:5432: release `billing:42`: connection closed``.
pub(crate) fn from_postgres(
    server: &str,
    what: impl Display,
    error: tokio_postgres::Error,
) -> Error {
    let kind = classify(&error);
    let hint = match error.code() {
        Some(code) if *code == SqlState::OUT_OF_MEMORY => {
            " (the server's lock table is full: it holds about max_locks_per_transaction × \
             (max_connections + max_prepared_transactions) locks; raise max_locks_per_transaction)"
        }
        Some(code) if *code == SqlState::TOO_MANY_CONNECTIONS => {
            " (lower this client's sessions, max_waiters or max_transactions, or raise the \
             server's max_connections or the role's or database's CONNECTION LIMIT)"
        }
        Some(code) if *code == SqlState::QUERY_CANCELED => {
            " (cancelled by a cancel request or a statement_timeout)"
        }
        _ if rejected_certificate(&error) => {
            " (the server's certificate does not check out for the URL's sslmode: see its \
             sslrootcert, and the host name the certificate is for)"
        }
        _ if kind == ErrorKind::Config => {
            " (check the URL's user, password and database, and the user's privileges)"
        }
        _ => "",
    };
    // The driver's Display says "db error"; the server's own words are in its DbError.
    let detail = match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        // "error connecting to server" alone: the cause says which error.
        None => match std::error::Error::source(&error) {
            Some(cause) => format!("{error}: {cause}"),
            None => error.to_string(),
        },
    };
    Error::new(kind, BACKEND, format!("{server}: {what}: {detail}{hint}")).with_source(error)
}

fn classify(error: &tokio_postgres::Error) -> ErrorKind {
    if error.is_closed() {
        return ErrorKind::Unavailable;
    }
    if rejected_certificate(error) {
        return ErrorKind::Config;
    }
    let Some(code) = error.code() else {
        // No server answer at all: refused, unreachable, timed out, reset.
        return ErrorKind::Unavailable;
    };
    match code.code() {
        // Authentication, unknown database or role, missing privilege.
        "28000" | "28P01" | "3D000" | "42501" => ErrorKind::Config,
        // The lock table or another resource is exhausted; the server is
        // shutting down, starting up or in recovery; the connection broke.
        class if class.starts_with("53") || class.starts_with("57P") || class.starts_with("08") => {
            ErrorKind::Unavailable
        }
        // A read-only server (a standby, or default_transaction_read_only).
        "25006" => ErrorKind::Unavailable,
        // A statement cancelled: by a cancel request, or by a timeout that
        // is not lockkit's (its own sessions switch the role's off).
        "57014" => ErrorKind::Unavailable,
        _ => ErrorKind::Backend,
    }
}

/// Whether TLS failed because the server's certificate did not verify:
/// the URL's settings are wrong, and trying again cannot help.
fn rejected_certificate(error: &tokio_postgres::Error) -> bool {
    #[cfg(feature = "tls")]
    {
        let is_rejection = |error: &(dyn std::error::Error + 'static)| {
            // An io::Error hides its inner error from `source`.
            let error = match error.downcast_ref::<std::io::Error>() {
                Some(io) => io.get_ref().map_or(error, |inner| inner as _),
                None => error,
            };
            matches!(
                error.downcast_ref::<rustls::Error>(),
                Some(rustls::Error::InvalidCertificate(_))
            )
        };
        let mut source = std::error::Error::source(error);
        while let Some(error) = source {
            if is_rejection(error) {
                return true;
            }
            source = error.source();
        }
    }
    #[cfg(not(feature = "tls"))]
    let _ = error;
    false
}

/// Whether `error` is `lock_timeout` running out (SQLSTATE 55P03).
pub(crate) fn is_lock_timeout(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
}
