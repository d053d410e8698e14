//! Exit statuses (sysexits.h, as `flock(1)` and mail tools use them) and
//! the one-line failure that goes with each.

use std::process::ExitCode;

use lockkit::{Error, ErrorKind};

/// Bad arguments, URL or configuration.
pub(crate) const EX_USAGE: u8 = 64;
/// The backend could not be reached, or refused the operation.
pub(crate) const EX_UNAVAILABLE: u8 = 69;
/// The lock was lost while the program ran.
pub(crate) const EX_SOFTWARE: u8 = 70;
/// The runtime could not start, or the program could not be waited for.
pub(crate) const EX_OSERR: u8 = 71;
/// Standard output could not be written.
pub(crate) const EX_IOERR: u8 = 74;
/// The lock was not acquired in time.
pub(crate) const EX_TEMPFAIL: u8 = 75;
/// The program exists but could not be started (as a shell says it).
pub(crate) const CANNOT_EXECUTE: u8 = 126;
/// The program was not found (as a shell says it).
pub(crate) const NOT_FOUND: u8 = 127;

/// Why `lockkit` stops before the work is done: a status and one line for stderr.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    /// `None`: nothing to say (the reader of standard output went away).
    message: Option<String>,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: Some(message.into()),
        }
    }

    /// A status with no line to print.
    pub(crate) fn silent(code: u8) -> Self {
        Self {
            code,
            message: None,
        }
    }

    /// A lockkit error, with the status its kind calls for: refused input
    /// or configuration is a usage error, anything else the backend's
    /// failure. The message is the error's own: it names the backend, the
    /// server and the step, and never shows a password.
    pub(crate) fn from_error(error: &Error) -> Self {
        let code = match error.kind() {
            ErrorKind::InvalidInput | ErrorKind::Config => EX_USAGE,
            ErrorKind::Contended | ErrorKind::Timeout => EX_TEMPFAIL,
            _ => EX_UNAVAILABLE,
        };
        // lockkit's own refusals (a name, a URL) are said once, not as
        // `lockkit: lockkit: …`.
        let text = error.to_string();
        let text = text.strip_prefix("lockkit: ").unwrap_or(&text);
        Self::new(code, text)
    }

    /// Prints the line on stderr and gives the status.
    pub(crate) fn report(self) -> ExitCode {
        if let Some(message) = self.message {
            crate::output::warn(message.replace('\n', " "));
        }
        ExitCode::from(self.code)
    }
}
