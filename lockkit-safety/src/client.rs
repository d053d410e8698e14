//! A client process of a run: its own `Locker` from the run's
//! configuration, and one or more tasks that each loop — acquire the shared
//! name, write to the fenced resource, hold a random short time, write
//! again, release — printing their [`Event`]s to stdout as JSON lines.
//!
//! It reads commands on stdin, one a line: `stop` ends the loop (each task
//! finishes its turn and releases); `pause` makes the next task about to
//! write stop its own process (SIGSTOP) between its lease check and the
//! write, for the harness to continue it (SIGCONT) later; `long` makes the
//! next grant a long turn — a write every [`LONG_WRITE_EVERY`] for
//! [`LONG_TURN`], while the lease stays valid — so that a fault strikes a
//! holder in the middle of its work; `quiet` makes tasks stop acquiring —
//! a waiting acquire is dropped, a turn is finished — until `resume`.
//! Closed stdin is `stop`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockkit::{Acquire, LeaseState, LockConfig, Locker};
use nix::sys::signal::{raise, Signal};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

use crate::clock::now_ns;
use crate::history::Event;
use crate::resource::{WriteRequest, Writer};

/// How a client process runs.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The lockkit configuration (TOML) to connect with.
    #[arg(long)]
    pub config: PathBuf,
    /// The name every client locks.
    #[arg(long)]
    pub name: String,
    /// The client number of this process's first task.
    #[arg(long)]
    pub first_id: u32,
    /// Tasks in this process, each a client of its own number.
    #[arg(long, default_value_t = 1)]
    pub tasks: u32,
    /// The fenced resource's address.
    #[arg(long)]
    pub resource: SocketAddr,
    /// Each acquire's TTL (renewed automatically).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// The longest a task holds between its two writes.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub hold_max: Duration,
}

/// How long an acquire waits before it gives up and tries again.
const WAIT: Duration = Duration::from_secs(30);

/// How long a long turn holds: past the start of the fault that strikes
/// it, without holding the whole run up while the fault lasts.
pub const LONG_TURN: Duration = Duration::from_secs(2);

/// How often a long turn writes.
pub const LONG_WRITE_EVERY: Duration = Duration::from_millis(100);

/// After a failed acquire (a server down), the pause before the next try,
/// so a dead server is not a busy loop.
const AFTER_FAILURE: Duration = Duration::from_millis(100);

/// Prints one event as a JSON line (stdout is line-buffered: the line
/// leaves whole).
fn emit(event: &Event) {
    if let Ok(line) = serde_json::to_string(event) {
        println!("{line}");
    }
}

/// Runs a client process until `stop` or the end of stdin.
pub async fn run(args: ClientArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.config)
        .map_err(|error| format!("--config {}: {error}", args.config.display()))?;
    let config = LockConfig::from_toml(&text).map_err(|error| error.to_string())?;
    let locks = lockkit::connect(config)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let (stop_tx, stop) = watch::channel(false);
    let pause = Arc::new(AtomicBool::new(false));
    let long = Arc::new(AtomicBool::new(false));
    let (quiet_tx, quiet) = watch::channel(false);
    let commands = {
        let (pause, long) = (Arc::clone(&pause), Arc::clone(&long));
        tokio::spawn(async move {
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match line.trim() {
                    "pause" => pause.store(true, Ordering::SeqCst),
                    "long" => long.store(true, Ordering::SeqCst),
                    "quiet" => drop(quiet_tx.send_replace(true)),
                    "resume" => drop(quiet_tx.send_replace(false)),
                    "stop" => break,
                    other => eprintln!("lockkit-safety client: unknown command {other:?}"),
                }
            }
            let _ = stop_tx.send(true);
        })
    };
    let mut tasks = Vec::new();
    for index in 0..args.tasks {
        let writer = Writer::connect(args.resource)
            .await
            .map_err(|error| format!("the resource at {}: {error}", args.resource))?;
        let task = Task {
            locks: locks.clone(),
            name: args.name.clone(),
            client: args.first_id + index,
            ttl: args.ttl,
            hold_max: args.hold_max,
            pause: Arc::clone(&pause),
            long: Arc::clone(&long),
            writer,
            op: 0,
        };
        tasks.push(tokio::spawn(task.run(stop.clone(), quiet.clone())));
    }
    let mut outcome = Ok(());
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => outcome = Err(error),
            Err(error) => outcome = Err(format!("a client task ended: {error}")),
        }
    }
    commands.abort();
    let _ = locks.close().await;
    outcome
}

struct Task {
    locks: Locker,
    name: String,
    client: u32,
    ttl: Duration,
    hold_max: Duration,
    pause: Arc<AtomicBool>,
    long: Arc<AtomicBool>,
    writer: Writer,
    op: u64,
}

impl Task {
    async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
        mut quiet: watch::Receiver<bool>,
    ) -> Result<(), String> {
        let options = Acquire::ttl(self.ttl).auto_renew().wait(WAIT);
        while !*stop.borrow() {
            if *quiet.borrow_and_update() {
                tokio::select! {
                    _ = quiet.wait_for(|quiet| !*quiet) => {}
                    _ = stop.changed() => break,
                }
            }
            let acquired = tokio::select! {
                acquired = self.locks.acquire(&self.name, options) => acquired,
                _ = stop.changed() => break,
                // A quieted waiter leaves the line (a dropped acquire
                // leaves no grant behind: the contract's cancellation safety).
                _ = quiet.wait_for(|quiet| *quiet) => continue,
            };
            let lease = match acquired {
                Ok(lease) => lease,
                Err(error) => {
                    emit(&Event::Failed {
                        at_ns: now_ns(),
                        client: self.client,
                        error: error.to_string(),
                    });
                    tokio::time::sleep(AFTER_FAILURE).await;
                    continue;
                }
            };
            let token = lease.fencing_token().get();
            emit(&Event::Granted {
                at_ns: now_ns(),
                client: self.client,
                token,
            });
            let view = lease.view();
            let client = self.client;
            let watcher = tokio::spawn(async move {
                if view.lost().await == LeaseState::Lost {
                    emit(&Event::Lost {
                        at_ns: now_ns(),
                        client,
                        token,
                    });
                }
            });
            let long = self.long.swap(false, Ordering::SeqCst);
            if long {
                emit(&Event::LongTurn {
                    at_ns: now_ns(),
                    client: self.client,
                    token,
                });
            }
            let turn_ends = Instant::now() + if long { LONG_TURN } else { Duration::ZERO };
            for write in 0.. {
                if write > 0 {
                    if long && Instant::now() >= turn_ends {
                        break;
                    }
                    let hold = if long {
                        LONG_WRITE_EVERY
                    } else {
                        self.hold_max.mul_f64(fastrand::f64())
                    };
                    tokio::select! {
                        () = tokio::time::sleep(hold) => {}
                        // Told to stop: the turn ends now, released below.
                        _ = stop.changed() => break,
                    }
                }
                // The careful client's check: write only while the lease
                // may be relied on.
                if !lease.state().is_valid() {
                    break;
                }
                if self.pause.swap(false, Ordering::SeqCst) {
                    // The pause of Kleppmann's critique, where it hurts:
                    // after the check, before the write.
                    raise(Signal::SIGSTOP).map_err(|error| format!("SIGSTOP: {error}"))?;
                }
                self.op += 1;
                let request = WriteRequest {
                    client: self.client,
                    token,
                    op: self.op,
                };
                self.writer
                    .write(request)
                    .await
                    .map_err(|error| format!("the resource: {error}"))?;
                if write == 1 && !long {
                    break;
                }
            }
            emit(&Event::Releasing {
                at_ns: now_ns(),
                client: self.client,
                token,
            });
            // A lease lost meanwhile is NotHeld here: nothing to undo.
            let _ = lease.release().await;
            watcher.abort();
        }
        Ok(())
    }
}
