//! The terminal, lent to the program while it runs in its own process group.
//!
//! The program runs in a process group of its own, so that a lost lock's
//! SIGTERM reaches every process it started. A group that is not the
//! terminal's foreground is stopped (SIGTTIN) when it reads from the
//! terminal, so when lockkit itself is in the foreground, the program's
//! group is made the foreground for as long as it runs, as a shell does
//! for a job — and when the program is stopped (Ctrl-Z), lockkit takes the
//! terminal back and stops too, so the shell gets its prompt back, and
//! lends it again when the shell continues it (`fg`).

use std::io::IsTerminal;

use nix::sys::signal::{killpg, pthread_sigmask, raise, SigSet, SigmaskHow, Signal};
use nix::unistd::{getpgrp, tcgetpgrp, tcsetpgrp, Pid};

/// The terminal lent to the program's group; dropping it takes it back.
#[derive(Debug)]
pub(crate) struct Foreground {
    /// While lent: lockkit's own group, and this thread's signal mask
    /// before SIGTTOU was blocked.
    lent: Option<(Pid, SigSet)>,
}

impl Foreground {
    /// Makes `group` the terminal's foreground, if lockkit's group is.
    ///
    /// While it is lent, this thread blocks SIGTTOU: lockkit writes its
    /// own lines (a lost lock) and takes the terminal back from the
    /// background, which would otherwise stop it under `stty tostop`.
    /// Called after the program started, so it does not inherit the mask.
    pub(crate) fn give_to(group: Pid) -> Self {
        let stdin = std::io::stdin();
        let ours = getpgrp();
        let in_foreground =
            stdin.is_terminal() && tcgetpgrp(&stdin).is_ok_and(|front| front == ours);
        if !in_foreground {
            return Self { lent: None };
        }
        let mut blocked = SigSet::empty();
        blocked.add(Signal::SIGTTOU);
        let mut previous = SigSet::empty();
        if pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), Some(&mut previous)).is_err()
            || tcsetpgrp(&stdin, group).is_err()
        {
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
            return Self { lent: None };
        }
        // It may have read the terminal before it was its own, and stopped.
        let _ = killpg(group, Signal::SIGCONT);
        Self {
            lent: Some((ours, previous)),
        }
    }

    /// The program stopped: with the terminal lent, lockkit takes it back
    /// and stops itself (SIGTSTP), as the job the shell knows; continued,
    /// it lends the terminal again and continues the program. Without a
    /// terminal, the program stays stopped until someone continues it.
    pub(crate) fn suspend(&mut self, group: Pid) {
        let Some((ours, _)) = self.lent else { return };
        if tcsetpgrp(std::io::stdin(), ours).is_err() {
            return;
        }
        let _ = raise(Signal::SIGTSTP);
        // Continued: in the foreground (`fg`) the terminal is the
        // program's again; in the background (`bg`) it stays the shell's.
        let stdin = std::io::stdin();
        if tcgetpgrp(&stdin).is_ok_and(|front| front == ours) {
            let _ = tcsetpgrp(&stdin, group);
        }
        let _ = killpg(group, Signal::SIGCONT);
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        let Some((ours, previous)) = self.lent.take() else {
            return;
        };
        let _ = tcsetpgrp(std::io::stdin(), ours);
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
    }
}
