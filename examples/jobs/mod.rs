//! The quickstart's workload, shared by the examples so each differs only in
//! how it picks its backend: several workers share a queue of jobs, a lock
//! per job makes sure each runs once at a time, and a fenced ledger refuses
//! any write from a stale holder.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockkit::{Acquire, FencingToken, LockConfig, Locker};

const WORKERS: usize = 4;
const JOBS: usize = 8;

/// The protected resource: it remembers the highest fencing token per job
/// and refuses writes carrying a lower one.
#[derive(Default)]
struct Ledger {
    highest: Mutex<HashMap<usize, u64>>,
    holders: Vec<AtomicUsize>,
    overlaps: AtomicUsize,
}

impl Ledger {
    fn new() -> Self {
        Self {
            holders: (0..JOBS).map(|_| AtomicUsize::new(0)).collect(),
            ..Self::default()
        }
    }

    fn write(&self, job: usize, token: FencingToken) -> Result<(), String> {
        let mut highest = self.highest.lock().unwrap();
        let seen = highest.entry(job).or_insert(0);
        if token.get() <= *seen {
            return Err(format!("stale token {token} (seen {seen})"));
        }
        *seen = token.get();
        Ok(())
    }
}

/// Connects to the backend `LOCKKIT_URL` names (with the other `LOCKKIT_*`
/// variables), or to `default_url`, and runs the workers; exits with status
/// 1 if two holders of a job ever overlapped.
pub async fn main(default_url: &str) -> lockkit::Result<()> {
    // LOCKKIT_URL picks the backend; a bad value is an error, never a silent fallback.
    let config = match std::env::var_os("LOCKKIT_URL") {
        Some(_) => LockConfig::from_env()?,
        None => LockConfig::new(default_url),
    };
    let locks = lockkit::connect(config).await?;
    if run(locks).await? {
        Ok(())
    } else {
        std::process::exit(1)
    }
}

/// Runs the workers on `locks`; returns whether no two holders of a job ever overlapped.
pub async fn run(locks: Locker) -> lockkit::Result<bool> {
    println!(
        "backend: {} ({:?})",
        locks.backend().name(),
        locks.capabilities().safety
    );
    let ledger = Arc::new(Ledger::new());
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let (locks, ledger) = (locks.clone(), Arc::clone(&ledger));
        workers.push(tokio::spawn(async move {
            let mut grants = 0;
            for round in 0..JOBS {
                let job = (worker + round) % JOBS;
                let options = Acquire::ttl(Duration::from_secs(5)).wait(Duration::from_secs(2));
                let lease = locks.acquire(&format!("job:{job}"), options).await?;
                if ledger.holders[job].fetch_add(1, Ordering::SeqCst) > 0 {
                    ledger.overlaps.fetch_add(1, Ordering::SeqCst);
                }
                let token = lease.fencing_token();
                let verdict = match ledger.write(job, token) {
                    Ok(()) => "ledger accepted".to_owned(),
                    Err(why) => format!("ledger refused: {why}"),
                };
                println!(
                    "worker {worker} holds job:{job} with fencing token {token:>2}; {verdict}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
                ledger.holders[job].fetch_sub(1, Ordering::SeqCst);
                lease.release().await?;
                grants += 1;
            }
            lockkit::Result::Ok(grants)
        }));
    }
    let mut grants = 0;
    for worker in workers {
        grants += worker.await.expect("worker task")?;
    }
    let overlaps = ledger.overlaps.load(Ordering::SeqCst);
    println!(
        "{grants} grants across {WORKERS} workers and {JOBS} jobs: {}",
        if overlaps == 0 {
            "no two holders ever overlapped".to_owned()
        } else {
            format!("{overlaps} OVERLAPS")
        }
    );
    Ok(overlaps == 0)
}
