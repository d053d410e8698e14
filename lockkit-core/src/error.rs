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
/// Displays as `<backend>: <message>`, for example
/// ``redis 127.0.0.1:6379: lock `billing:42` not held by this owner (expired 1.2s ago)``.
pub struct Error {
    kind: ErrorKind,
    backend: &'static str,
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
            message: message.into(),
            retryable: kind.is_retryable(),
            source: None,
        }
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

    /// The human-readable message, without the backend prefix.
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
        write!(f, "{}: {}", self.backend, self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Error");
        debug
            .field("kind", &self.kind)
            .field("backend", &self.backend)
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
    fn only_transient_kinds_are_retryable() {
        assert!(!Error::invalid_input("memory", "name is empty").is_retryable());
        assert!(!Error::new(ErrorKind::NotHeld, "memory", "gone").is_retryable());
        assert!(Error::new(ErrorKind::Timeout, "memory", "late").is_retryable());
    }
}
