//! The terminal, lent to the program while it runs in its own process group.
//!
//! The program runs in a process group of its own, so that a lost lock's
//! SIGTERM reaches every process it started. A group that is not the
//! terminal's foreground is stopped (SIGTTIN) when it reads from the
//! terminal, so when lockkit itself is in the foreground, the program's
//! group is made the foreground for as long as it runs, as a shell does
//! for a job.

use std::io::IsTerminal;

use nix::sys::signal::{killpg, SigSet, SigmaskHow, Signal};
use nix::unistd::{getpgrp, tcgetpgrp, tcsetpgrp, Pid};

/// The terminal lent to the program's group; dropping it takes it back.
#[derive(Debug)]
pub(crate) struct Foreground {
    /// lockkit's own group, when the terminal was lent.
    ours: Option<Pid>,
}

impl Foreground {
    /// Makes `group` the terminal's foreground, if lockkit's group is.
    pub(crate) fn give_to(group: Pid) -> Self {
        let stdin = std::io::stdin();
        let ours = getpgrp();
        let in_foreground =
            stdin.is_terminal() && tcgetpgrp(&stdin).is_ok_and(|front| front == ours);
        if !in_foreground || tcsetpgrp(&stdin, group).is_err() {
            return Self { ours: None };
        }
        // It may have read the terminal before it was its own, and stopped.
        let _ = killpg(group, Signal::SIGCONT);
        Self { ours: Some(ours) }
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        let Some(ours) = self.ours else { return };
        // Taking the terminal back from the background would stop lockkit
        // with SIGTTOU, unless this thread blocks it.
        let mut blocked = SigSet::empty();
        blocked.add(Signal::SIGTTOU);
        let mut previous = SigSet::empty();
        if nix::sys::signal::pthread_sigmask(
            SigmaskHow::SIG_BLOCK,
            Some(&blocked),
            Some(&mut previous),
        )
        .is_err()
        {
            return;
        }
        let _ = tcsetpgrp(std::io::stdin(), ours);
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
    }
}
