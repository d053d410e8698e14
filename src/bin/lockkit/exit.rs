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
/// The runtime could not start.
pub(crate) const EX_OSERR: u8 = 71;
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
    message: String,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A lockkit error during `action`, with the status its kind calls for:
    /// refused input or configuration is a usage error, anything else the
    /// backend's failure. The message is the error's own (it names the
    /// backend and server and never shows a password) and what caused it.
    pub(crate) fn from_error(action: &str, error: &Error) -> Self {
        let code = match error.kind() {
            ErrorKind::InvalidInput | ErrorKind::Config => EX_USAGE,
            ErrorKind::Contended | ErrorKind::Timeout => EX_TEMPFAIL,
            _ => EX_UNAVAILABLE,
        };
        Self::new(code, format!("{action}: {error}"))
    }

    /// Prints the line on stderr and gives the status.
    pub(crate) fn report(self) -> ExitCode {
        let line = self.message.replace('\n', " ");
        eprintln!("lockkit: {line}");
        ExitCode::from(self.code)
    }
}
