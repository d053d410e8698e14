//! The controlling terminal, lent to the program while it runs in its own
//! process group, and job control (Ctrl-Z, `fg`, `bg`) passed through.
//!
//! The program runs in a process group of its own, so that a lost lock's
//! SIGTERM reaches every process it started. A group that is not the
//! terminal's foreground is stopped (SIGTTIN) when it reads the terminal —
//! its stdin, or `/dev/tty` for a password prompt — so while lockkit's
//! job is in the foreground, the program's group is the terminal's
//! foreground, as a shell does for a job. Whether lockkit has a terminal
//! is decided by its controlling terminal, not by its stdin (`echo x |
//! lockkit run …` still has one).

use std::fs::File;

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::unistd::{getpgrp, tcgetpgrp, tcsetpgrp, Pid};

/// lockkit's controlling terminal, if it has one, and whether it is lent.
#[derive(Debug)]
pub(crate) struct Terminal {
    tty: Option<File>,
    /// lockkit's own process group: its job.
    ours: Pid,
    /// Whether the program's group is the terminal's foreground now.
    lent: bool,
    /// This thread's signal mask before SIGTTOU was blocked.
    mask: Option<SigSet>,
}

impl Terminal {
    /// The controlling terminal (`/dev/tty`), if lockkit has one. Opened
    /// close-on-exec: the program does not inherit this handle.
    pub(crate) fn open() -> Self {
        Self {
            tty: File::options().read(true).write(true).open("/dev/tty").ok(),
            ours: getpgrp(),
            lent: false,
            mask: None,
        }
    }

    /// Whether lockkit has a controlling terminal (is under job control).
    pub(crate) fn exists(&self) -> bool {
        self.tty.is_some()
    }

    /// Makes `group` the terminal's foreground if lockkit's job is the
    /// foreground now (not after `bg`, or in a background job).
    ///
    /// From the first lending on, this thread blocks SIGTTOU: lockkit
    /// writes its own lines (a lost lock) while the program has the
    /// terminal, and takes the terminal back, which would otherwise stop
    /// it under `stty tostop`. Called after the program started, so the
    /// program does not inherit the mask.
    pub(crate) fn lend(&mut self, group: Pid) {
        let Some(tty) = &self.tty else { return };
        if self.lent || !tcgetpgrp(tty).is_ok_and(|front| front == self.ours) {
            return;
        }
        if self.mask.is_none() {
            let mut blocked = SigSet::empty();
            blocked.add(Signal::SIGTTOU);
            let mut previous = SigSet::empty();
            if pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), Some(&mut previous)).is_err()
            {
                return;
            }
            self.mask = Some(previous);
        }
        self.lent = tcsetpgrp(tty, group).is_ok();
    }

    /// Takes the terminal back for lockkit's job, if it is lent — and only
    /// then: after `bg` the shell has it, and it stays the shell's.
    pub(crate) fn take_back(&mut self) {
        let Some(tty) = &self.tty else { return };
        if self.lent {
            let _ = tcsetpgrp(tty, self.ours);
            self.lent = false;
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.take_back();
        if let Some(previous) = self.mask.take() {
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
        }
    }
}
