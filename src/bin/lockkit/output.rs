//! Writing to standard output and standard error without panicking when
//! they are closed or full (`lockkit status … | head -1`, `> /dev/full`).

use std::fmt::Write as _;
use std::io::Write;

use crate::exit::{Failure, EX_IOERR};

/// Lines for standard output, written at once by [`Lines::emit`].
#[derive(Debug, Default)]
pub(crate) struct Lines(String);

impl Lines {
    pub(crate) fn line(&mut self, text: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{text}");
    }

    /// Writes the lines. A reader that went away (a closed pipe) ends
    /// lockkit quietly with 141, as SIGPIPE would; any other failure is
    /// [`EX_IOERR`] with one line saying why.
    pub(crate) fn emit(self) -> Result<(), Failure> {
        let mut stdout = std::io::stdout().lock();
        match stdout
            .write_all(self.0.as_bytes())
            .and_then(|()| stdout.flush())
        {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                Err(Failure::silent(128 + 13))
            }
            Err(error) => Err(Failure::new(
                EX_IOERR,
                format!("cannot write to standard output: {error}"),
            )),
        }
    }
}

/// One line on standard error, `lockkit: ` first; a standard error that
/// cannot be written is no reason to stop.
pub(crate) fn warn(text: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "lockkit: {text}");
}
