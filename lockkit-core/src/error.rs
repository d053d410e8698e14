//! One error type for every backend, classified by what the caller can do about it.

use std::error::Error as StdError;
use std::fmt;

/// A `Result` whose error is lockkit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, by meaning rather than by backend.
///
/// Backends map their driver's errors into these kinds, so an application
/// handles `Timeout` or `NotHeld` once, whatever backend its configuration picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller's input was refused before any I/O; the message names the field.
    InvalidInput,
    /// The configuration cannot be used (bad URL, backend not compiled in, weaker than required).
    Config,
    /// The backend cannot do this operation; it is never faked.
    Unsupported,
    /// A wait for the lock reached its deadline.
    Timeout,
    /// The lock is held by someone else and the caller asked not to wait.
    Contended,
    /// The caller no longer owns the lock (expired, lost, or taken over); nothing was changed.
    NotHeld,
    /// The backend could not be reached or did not answer.
    Unavailable,
    /// The backend answered with an error lockkit did not expect.
    Backend,
}

impl ErrorKind {
    /// Whether an operation that failed with this kind may succeed if tried again.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Timeout | Self::Contended | Self::Unavailable)
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid input",
            Self::Config => "configuration error",
            Self::Unsupported => "unsupported",
            Self::Timeout => "timed out",
            Self::Contended => "contended",
            Self::NotHeld => "not held",
            Self::Unavailable => "unavailable",
            Self::Backend => "backend error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lockkit error: its [`ErrorKind`], the backend that raised it, a message a
/// person can act on, and the underlying cause as its [`source`](StdError::source).
///
/// Displays as `<backend>[ <server>]: <message>`. The refusals every backend
/// raises ([`not_held`](Self::not_held), [`contended`](Self::contended),
/// [`timeout`](Self::timeout)) read alike, for example
/// ``redis 127.0.0.1:6379: release `billing:42`: not held by this owner (it expired and nobody holds it)``.
pub struct Error {
    kind: ErrorKind,
    backend: &'static str,
    server: Option<String>,
    message: String,
    retryable: bool,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` raised by `backend` (`"memory"`, `"redis"`, … or `"lockkit"`).
    pub fn new(kind: ErrorKind, backend: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            backend,
            server: None,
            message: message.into(),
            retryable: kind.is_retryable(),
            source: None,
        }
    }

    /// [`NotHeld`](ErrorKind::NotHeld):
    /// ``<action> `<name>`: not held by this owner (<reason>)``. The caller
    /// no longer owns the lock, and nothing was changed.
    pub fn not_held(
        backend: &'static str,
        action: &str,
        name: &str,
        reason: impl fmt::Display,
    ) -> Self {
        Self::refusal(
            ErrorKind::NotHeld,
            backend,
            action,
            name,
            "not held by this owner",
            reason,
        )
    }

    /// [`Contended`](ErrorKind::Contended):
    /// ``<action> `<name>`: not free (<reason>)``, for an acquire that asked
    /// not to wait.
    pub fn contended(
        backend: &'static str,
        action: &str,
        name: &str,
        reason: impl fmt::Display,
    ) -> Self {
        Self::refusal(
            ErrorKind::Contended,
            backend,
            action,
            name,
            "not free",
            reason,
        )
    }

    /// [`Timeout`](ErrorKind::Timeout):
    /// ``<action> `<name>`: still held at the deadline (<reason>)``.
    pub fn timeout(
        backend: &'static str,
        action: &str,
        name: &str,
        reason: impl fmt::Display,
    ) -> Self {
        Self::refusal(
            ErrorKind::Timeout,
            backend,
            action,
            name,
            "still held at the deadline",
            reason,
        )
    }

    fn refusal(
        kind: ErrorKind,
        backend: &'static str,
        action: &str,
        name: &str,
        what: &str,
        reason: impl fmt::Display,
    ) -> Self {
        Self::new(
            kind,
            backend,
            format!("{action} `{name}`: {what} ({reason})"),
        )
    }

    /// Names the server the error concerns (`127.0.0.1:6379`), shown after
    /// the backend's name.
    pub fn at(mut self, server: impl Into<String>) -> Self {
        self.server = Some(server.into());
        self
    }

    /// [`Unavailable`](ErrorKind::Unavailable), not retryable: every call
    /// after the backend was closed. Name the server with [`at`](Self::at).
    pub fn closed(backend: &'static str) -> Self {
        Self::new(ErrorKind::Unavailable, backend, "the backend was closed").with_retryable(false)
    }

    /// Input refused before any I/O; `message` names the offending field.
    pub fn invalid_input(backend: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, backend, message)
    }

    /// An operation this backend cannot perform.
    pub fn unsupported(backend: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, backend, message)
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Overrides whether retrying may help (by default it follows [`ErrorKind::is_retryable`]).
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The backend that raised the error.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The server the error concerns, if the backend named one.
    pub fn server(&self) -> Option<&str> {
        self.server.as_deref()
    }

    /// The human-readable message, without the backend and server prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the same operation may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.server {
            Some(server) => write!(f, "{} {server}: {}", self.backend, self.message),
            None => write!(f, "{}: {}", self.backend, self.message),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Error");
        debug
            .field("kind", &self.kind)
            .field("backend", &self.backend)
            .field("server", &self.server)
            .field("message", &self.message)
            .field("retryable", &self.retryable);
        if let Some(source) = &self.source {
            debug.field("source", source);
        }
        debug.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_backend_and_source_chain_is_kept() {
        let cause = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = Error::new(
            ErrorKind::Unavailable,
            "redis",
            "cannot reach 127.0.0.1:6379",
        )
        .with_source(cause);
        assert_eq!(error.to_string(), "redis: cannot reach 127.0.0.1:6379");
        assert!(error.is_retryable());
        assert_eq!(error.source().unwrap().to_string(), "refused");
    }

    #[test]
    fn the_refusals_of_every_backend_read_alike() {
        let error = Error::not_held(
            "redis",
            "release",
            "billing:42",
            "it expired and nobody holds it",
        )
        .at("127.0.0.1:6379");
        assert_eq!(
            error.to_string(),
            "redis 127.0.0.1:6379: release `billing:42`: not held by this owner \
             (it expired and nobody holds it)"
        );
        assert_eq!(error.kind(), ErrorKind::NotHeld);
        assert_eq!(error.server(), Some("127.0.0.1:6379"));
        let error = Error::contended("memory", "acquire", "job:7", "another owner holds it");
        assert_eq!(
            error.to_string(),
            "memory: acquire `job:7`: not free (another owner holds it)"
        );
        assert!(error.is_retryable());
        let error = Error::timeout("postgres", "acquire", "job:7", "waited 5s").at("db:5432");
        assert_eq!(error.kind(), ErrorKind::Timeout);
        assert_eq!(
            error.to_string(),
            "postgres db:5432: acquire `job:7`: still held at the deadline (waited 5s)"
        );
    }

    #[test]
    fn only_transient_kinds_are_retryable() {
        assert!(!Error::invalid_input("memory", "name is empty").is_retryable());
        assert!(!Error::new(ErrorKind::NotHeld, "memory", "gone").is_retryable());
        assert!(Error::new(ErrorKind::Timeout, "memory", "late").is_retryable());
    }
}
