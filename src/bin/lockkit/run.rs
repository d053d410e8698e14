//! `lockkit run`: acquire, run the program with the fencing token in its
//! environment, keep the lease, stop the program if the lease is lost,
//! release when it exits, exit with its status.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus};
use std::time::{Duration, Instant, SystemTime};

use lockkit::{Acquire, ErrorKind, Lease, LeaseState, LockConfig, Locker};
use nix::sys::signal::{killpg, raise, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgrp, Pid};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

use crate::exit::{Failure, CANNOT_EXECUTE, EX_SOFTWARE, EX_TEMPFAIL, NOT_FOUND};
use crate::output::warn;
use crate::status::describe_holder;
use crate::terminal::Terminal;
use crate::RunArgs;

pub(crate) const LONG_ABOUT: &str = "\
Acquire NAME, run PROGRAM while holding it, release it when PROGRAM exits, and exit with \
PROGRAM's status.

PROGRAM runs in its own process group, with these in its environment:
  LOCKKIT_LOCK_NAME      the lock's name
  LOCKKIT_FENCING_TOKEN  the grant's fencing token: a number that is higher for every later \
grant of NAME. Hand it to what PROGRAM writes to, and have that refuse a token lower than \
the highest it has seen: that keeps a holder that lost the lock (paused, cut off) from \
writing after the next one began.
  LOCKKIT_BACKEND        the backend's name (redis, redlock, postgres, etcd, zk, memory)

While PROGRAM runs the lease is renewed (unless --no-renew); on PostgreSQL, whose sessions \
the server never times out, the lock is confirmed every third of --ttl instead, so a \
connection cut off without closing is found within that plus the response timeout. If the \
lease is lost all the same — its TTL ran out, the session ended, the server failed over — \
PROGRAM's process group gets SIGTERM, SIGKILL --kill-after later (also any process of the \
group still alive then), and lockkit exits 70 saying when the lock was lost. SIGINT, \
SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGALRM sent to lockkit are passed to \
PROGRAM's process group; the lock is released once PROGRAM exits, and if PROGRAM died of \
SIGINT, SIGTERM or SIGHUP lockkit ends by it too, so a shell loop around it stops. SIGTSTP \
(Ctrl-Z, `kill -TSTP %1`) stops PROGRAM and lockkit together; continued, lockkit checks the \
lease before it continues PROGRAM. The lock is released when PROGRAM itself exits: \
processes it left running in the background are not waited for. While lockkit's job is a \
terminal's foreground, PROGRAM's group is (it can read the terminal, even with stdin \
redirected; Ctrl-C reaches it directly).

Not acquired within --wait (or at once, with --no-wait): exit 75 with one line saying who \
holds NAME, where the backend can tell. If lockkit itself is killed with SIGKILL, PROGRAM \
runs on unguarded and the lock is freed by its TTL or when lockkit's session ends.";

/// Runs `args.program` under the lock `args.name`.
pub(crate) async fn run(config: LockConfig, args: RunArgs) -> Result<ExitCode, Failure> {
    let mut signals = Signals::new()?;
    let locks = crate::connect(config).await?;
    let mut acquiring = Box::pin(acquire(&locks, &args));
    let mut suspend = signals.suspend.take();
    let lease = loop {
        tokio::select! {
            acquired = &mut acquiring => break acquired,
            // Ctrl-Z while waiting: no program yet, lockkit stops alone.
            Some(_) = suspended(&mut suspend) => {
                let _ = raise(Signal::SIGSTOP);
            }
            signal = signals.next() => {
                // Dropping the acquire withdraws it from the lock's queue.
                drop(acquiring);
                locks.close().await.ok();
                warn(format_args!("{signal} while waiting for `{}`; not acquired", args.name));
                // Ends by the signal, so a shell loop around lockkit stops.
                die_by(signal);
                return Err(Failure::silent(128 + signal as u8));
            }
        }
    };
    signals.suspend = suspend;
    let lease = match lease {
        Ok(lease) => lease,
        Err(failure) => {
            locks.close().await.ok();
            return Err(failure);
        }
    };
    // Confirming a session the server never times out is no renewal: it
    // runs with --no-renew too.
    let confirm_ttl = Some(args.ttl.unwrap_or(locks.default_ttl()));
    let outcome = supervise(&lease, &args, &mut signals, confirm_ttl).await;
    let code = match outcome {
        Ok(Ended::Exited(status)) => match lease.release().await {
            Ok(()) => Ok(Exit::Program(status)),
            // Not held at the release: it was lost while the program ran,
            // unnoticed until now (its connection died as it exited).
            Err(error) if error.kind() == ErrorKind::NotHeld => {
                warn(format_args!(
                    "{error}: the lock was lost before the program exited ({})",
                    describe_status(status)
                ));
                Ok(Exit::Code(ExitCode::from(EX_SOFTWARE)))
            }
            Err(error) => {
                warn(format_args!(
                    "{error} (the lock frees by its TTL or session end)"
                ));
                Ok(Exit::Program(status))
            }
        },
        Ok(Ended::Lost) => Ok(Exit::Code(ExitCode::from(EX_SOFTWARE))),
        Err(failure) => {
            lease.release().await.ok();
            Err(failure)
        }
    };
    locks.close().await.ok();
    code.map(Exit::finish)
}

/// Ends lockkit by SIGINT, SIGTERM or SIGHUP (their default action:
/// termination), as a shell expects of the command it waits for; returns
/// for any other signal, or if that failed.
fn die_by(signal: Signal) {
    if matches!(signal, Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP) {
        let _ = signal_hook::low_level::emulate_default_handler(signal as i32);
    }
}

/// What `lockkit run` ends with.
enum Exit {
    /// The program's own status, passed on.
    Program(ExitStatus),
    /// lockkit's own status.
    Code(ExitCode),
}

impl Exit {
    /// The status to exit with. A program ended by SIGINT, SIGTERM or
    /// SIGHUP ends lockkit by the same signal, as a shell expects of the
    /// command it waits for: a loop around `lockkit run` stops at Ctrl-C.
    fn finish(self) -> ExitCode {
        match self {
            Self::Code(code) => code,
            Self::Program(status) => {
                if let Some(signal) = status
                    .signal()
                    .and_then(|number| Signal::try_from(number).ok())
                {
                    die_by(signal);
                }
                exit_code(status)
            }
        }
    }
}

/// Acquires as the arguments say; a lock still held at the end of the wait
/// is a [`EX_TEMPFAIL`] failure naming its holder where the backend can read it.
async fn acquire(locks: &Locker, args: &RunArgs) -> Result<Lease, Failure> {
    let mut options = Acquire::default();
    if let Some(ttl) = args.ttl {
        options = options.with_ttl(ttl);
    }
    if !args.no_renew {
        options = options.auto_renew();
    }
    let name = args.name.as_str();
    if args.no_wait {
        return match locks.try_acquire(name, options).await {
            Ok(Some(lease)) => Ok(lease),
            Ok(None) => Err(not_acquired(locks, name, "held, and --no-wait was given").await),
            Err(error) => Err(Failure::from_error(&error)),
        };
    }
    if let Some(wait) = args.wait {
        options = options.wait(wait);
    }
    match locks.acquire(name, options).await {
        Ok(lease) => Ok(lease),
        Err(error) if error.kind() == ErrorKind::Timeout => {
            let waited = args.wait.map_or_else(String::new, |wait| {
                format!(" within {}", humantime::format_duration(wait))
            });
            Err(not_acquired(locks, name, &format!("not acquired{waited}")).await)
        }
        Err(error) => Err(Failure::from_error(&error)),
    }
}

/// How long the holder is looked up for the not-acquired line.
const HOLDER_LOOKUP: Duration = Duration::from_secs(2);

async fn not_acquired(locks: &Locker, name: &str, why: &str) -> Failure {
    let holder = match tokio::time::timeout(HOLDER_LOOKUP, locks.status(name)).await {
        Ok(Ok(status)) => match status.holder() {
            Some(holder) => format!("; holder: {}", describe_holder(holder)),
            None => "; it is free now".to_owned(),
        },
        Ok(Err(error)) if error.kind() == ErrorKind::Unsupported => String::new(),
        Ok(Err(error)) => format!("; its holder could not be read: {error}"),
        Err(_) => String::new(),
    };
    Failure::new(EX_TEMPFAIL, format!("`{name}`: {why}{holder}"))
}

/// How the program's run ended.
enum Ended {
    /// It exited while the lock was held.
    Exited(ExitStatus),
    /// The lock was lost while it ran; it was stopped (and has exited).
    Lost,
}

/// Starts the program and watches it, the lease and lockkit's signals
/// until the program exits.
async fn supervise(
    lease: &Lease,
    args: &RunArgs,
    signals: &mut Signals,
    confirm_ttl: Option<Duration>,
) -> Result<Ended, Failure> {
    let mut child = spawn(lease, args)?;
    let Some(group) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
    else {
        // Reaped already: it exited at once.
        let status = child.wait().await.map_err(wait_failed)?;
        return Ok(held_until_exit(lease, status));
    };
    let mut terminal = Terminal::open();
    terminal.lend(group);
    // It may have read the terminal before it was its own, and stopped.
    send(group, Signal::SIGCONT);
    let granted = Instant::now();
    let mut lost = false;
    let mut kill_at: Option<Instant> = None;
    let mut warned = false;
    let mut confirm = std::pin::pin!(confirm_session(lease, confirm_ttl));
    let mut changed = signals.child.take();
    let mut suspend = signals.suspend.take();
    let status = loop {
        tokio::select! {
            // A loss is acted on before anything else that is ready.
            biased;
            status = child.wait() => break status.map_err(wait_failed)?,
            state = lease.lost(), if !lost => {
                lost = true;
                // Past the clock's range, the program is never killed.
                kill_at = Instant::now().checked_add(args.kill_after);
                warn(format_args!(
                    "lost the lock `{}` (token {}) at {} after holding it {:.1}s ({}); \
                     sent SIGTERM to the program, SIGKILL in {}",
                    args.name,
                    lease.fencing_token(),
                    humantime::format_rfc3339_millis(SystemTime::now()),
                    granted.elapsed().as_secs_f64(),
                    why_lost(state),
                    humantime::format_duration(args.kill_after),
                ));
                send(group, Signal::SIGTERM);
                send(group, Signal::SIGCONT);
            }
            () = sleep_until(kill_at), if kill_at.is_some() => {
                kill_at = None;
                send(group, Signal::SIGKILL);
            }
            state = lease.not_held(), if !warned && !lost => {
                warned = true;
                if state == LeaseState::Uncertain {
                    warn(format_args!(
                        "the lock `{}` is uncertain: renewing it is failing; \
                         the program is stopped if it is lost",
                        args.name
                    ));
                }
            }
            () = &mut confirm => {}
            Some(_) = child_changed(&mut changed) => {
                // Stopped at the terminal (Ctrl-Z, or reading it from the
                // background): the job stops, as the shell expects.
                if stopped(group) && terminal.exists() && lease.state().is_valid() {
                    terminal.take_back();
                    let _ = killpg(getpgrp(), Signal::SIGTSTP);
                }
            }
            Some(_) = suspended(&mut suspend) => {
                stop_job(&mut terminal, group);
                // Continued. A lease that ran out meanwhile is not handed
                // back to the program: the loss is acted on first.
                terminal.lend(group);
                if lease.state().is_valid() {
                    send(group, Signal::SIGCONT);
                }
            }
            signal = signals.next() => {
                send(group, signal);
                // A stopped program would not act on it until continued.
                send(group, Signal::SIGCONT);
            }
        }
    };
    drop(terminal);
    if !lost {
        return Ok(held_until_exit(lease, status));
    }
    // Processes the program started may outlive it in its group: they get
    // the SIGKILL that was announced, at its time.
    if let Some(at) = kill_at {
        if group_lives_until(group, at).await {
            send(group, Signal::SIGKILL);
        }
    }
    Ok(Ended::Lost)
}

/// The next SIGCHLD; never, without a listener.
async fn child_changed(listener: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match listener {
        Some(listener) => listener.recv().await,
        None => std::future::pending().await,
    }
}

/// The next SIGTSTP to lockkit (Ctrl-Z, `kill -TSTP %1`); never, without a listener.
async fn suspended(listener: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    child_changed(listener).await
}

/// Stops the program's group, then lockkit itself, having taken the
/// terminal back: the job is stopped as a whole, so no program runs on
/// while its lockkit, which renews the lease, is stopped. Returns once
/// lockkit is continued.
fn stop_job(terminal: &mut Terminal, group: Pid) {
    send(group, Signal::SIGSTOP);
    terminal.take_back();
    let _ = raise(Signal::SIGSTOP);
}

/// How often a process group that outlived its leader is looked at until
/// its SIGKILL is due: nothing signals the end of a process that is not
/// lockkit's child.
const GROUP_LOOK: Duration = Duration::from_millis(50);

/// Whether any process of `group` is still alive at `at`.
async fn group_lives_until(group: Pid, at: Instant) -> bool {
    while killpg(group, None).is_ok() {
        if Instant::now() >= at {
            return true;
        }
        tokio::time::sleep(GROUP_LOOK.min(at.saturating_duration_since(Instant::now()))).await;
    }
    false
}

/// Whether the program (the leader of `group`) has stopped (Ctrl-Z,
/// SIGTTIN, SIGSTOP). Reports stops only: its exit stays for
/// `Child::wait` to collect.
fn stopped(group: Pid) -> bool {
    matches!(
        waitid(Id::Pid(group), WaitPidFlag::WSTOPPED | WaitPidFlag::WNOHANG),
        Ok(WaitStatus::Stopped(..))
    )
}

/// For a lease with no time bound of its own (a PostgreSQL session, which
/// the server never times out), confirms every third of `ttl` that the
/// session still holds the lock; a session cut off without its connection
/// closing (a half-open TCP connection) is found within the backend's
/// response timeout, and the lease turns Lost. Never ends otherwise.
async fn confirm_session(lease: &Lease, ttl: Option<Duration>) {
    let Some(ttl) = ttl.filter(|_| lease.valid_until().is_none()) else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(ttl / 3).await;
        match lease.extend(ttl).await {
            Ok(()) => {}
            // Lost now (NotHeld), or never confirmable (Unsupported): the
            // lease says which.
            Err(error) if matches!(error.kind(), ErrorKind::NotHeld | ErrorKind::Unsupported) => {
                return std::future::pending().await;
            }
            Err(error) => warn(format_args!("confirming the lock failed: {error}")),
        }
    }
}

/// The program exited: if the lease was lost meanwhile (the loss and the
/// exit came together), that is said as a loss.
fn held_until_exit(lease: &Lease, status: ExitStatus) -> Ended {
    let state = lease.state();
    if state.is_valid() {
        return Ended::Exited(status);
    }
    warn(format_args!(
        "lost the lock `{}` (token {}) by {} as the program exited ({}, {})",
        lease.name(),
        lease.fencing_token(),
        humantime::format_rfc3339_millis(SystemTime::now()),
        why_lost(state),
        describe_status(status),
    ));
    Ended::Lost
}

fn why_lost(state: LeaseState) -> &'static str {
    match state {
        LeaseState::Released => "it was released",
        _ => "its TTL ran out or its session ended",
    }
}

fn spawn(lease: &Lease, args: &RunArgs) -> Result<Child, Failure> {
    let (program, rest) = args
        .program
        .split_first()
        .ok_or_else(|| Failure::new(crate::exit::EX_USAGE, "no PROGRAM after `--`"))?;
    let mut command = Command::new(program);
    command
        .args(rest)
        .env("LOCKKIT_LOCK_NAME", &args.name)
        .env(
            "LOCKKIT_FENCING_TOKEN",
            lease.fencing_token().get().to_string(),
        )
        .env("LOCKKIT_BACKEND", lease.backend())
        // Its own group: a signal reaches every process it starts.
        .process_group(0);
    command
        .spawn()
        .map_err(|error| spawn_failed(program, &error))
}

fn spawn_failed(program: &OsString, error: &std::io::Error) -> Failure {
    let code = match error.kind() {
        std::io::ErrorKind::NotFound => NOT_FOUND,
        _ => CANNOT_EXECUTE,
    };
    Failure::new(
        code,
        format!("cannot run `{}`: {error}", program.to_string_lossy()),
    )
}

fn wait_failed(error: std::io::Error) -> Failure {
    Failure::new(
        crate::exit::EX_OSERR,
        format!("waiting for the program failed: {error}"),
    )
}

/// Sends `signal` to the program's process group; one that has exited is
/// no error.
fn send(group: Pid, signal: Signal) {
    if let Err(error) = killpg(group, signal) {
        if error != nix::errno::Errno::ESRCH {
            warn(format_args!("cannot send {signal} to the program: {error}"));
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The program's status as a shell gives it: its exit code, or 128 + the
/// signal that ended it.
fn exit_code(status: ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(signal)) => ExitCode::from(128u8.saturating_add(signal as u8)),
        (None, None) => ExitCode::FAILURE,
    }
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("its status {code}"),
        (None, Some(signal)) => format!("ended by signal {signal}"),
        (None, None) => "ended".to_owned(),
    }
}

/// The signals lockkit passes on to the program — once listened for, they
/// no longer end lockkit, which would leave the program running without
/// the lock — SIGCHLD, which says the program stopped (or exited), and
/// SIGTSTP, which stops the job.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    user1: tokio::signal::unix::Signal,
    user2: tokio::signal::unix::Signal,
    alarm: tokio::signal::unix::Signal,
    child: Option<tokio::signal::unix::Signal>,
    suspend: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Result<Self, Failure> {
        let listen = |kind: SignalKind| {
            signal(kind).map_err(|error| {
                Failure::new(
                    crate::exit::EX_OSERR,
                    format!("cannot listen for signals: {error}"),
                )
            })
        };
        Ok(Self {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
            hangup: listen(SignalKind::hangup())?,
            quit: listen(SignalKind::quit())?,
            user1: listen(SignalKind::user_defined1())?,
            user2: listen(SignalKind::user_defined2())?,
            alarm: listen(SignalKind::alarm())?,
            child: Some(listen(SignalKind::child())?),
            suspend: Some(listen(SignalKind::from_raw(Signal::SIGTSTP as i32))?),
        })
    }

    /// The next signal to pass on.
    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::SIGINT,
            _ = self.terminate.recv() => Signal::SIGTERM,
            _ = self.hangup.recv() => Signal::SIGHUP,
            _ = self.quit.recv() => Signal::SIGQUIT,
            _ = self.user1.recv() => Signal::SIGUSR1,
            _ = self.user2.recv() => Signal::SIGUSR2,
            _ = self.alarm.recv() => Signal::SIGALRM,
        }
    }
}
