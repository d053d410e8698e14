//! The workloads of DESIGN.md §7, each timed on the monotonic clock with
//! latencies in an HDR histogram.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Barrier;

use crate::subjects::{Outcome, Service, Subject};

/// Which workload, and its counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    /// 1 client, warm-up then acquire+release pairs on 1,000 names.
    W1,
    /// 16 clients contend for one name, hold 0.
    W2,
    /// 64 tasks on 64 names over one client.
    W3,
}

impl Workload {
    pub(crate) const ALL: [Workload; 3] = [Self::W1, Self::W2, Self::W3];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::W1 => "w1",
            Self::W2 => "w2",
            Self::W3 => "w3",
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    /// Pairs per second (W2: acquisitions per second).
    pub(crate) rate: f64,
    /// Latency of one pair (W2: wait of one acquire).
    pub(crate) latency: Histogram<u64>,
    /// W2: max/min acquisitions per client.
    pub(crate) fairness: Option<f64>,
}

/// The counts, divided by ten with `--quick`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) divisor: usize,
}

impl Counts {
    fn of(self, full: usize) -> usize {
        (full / self.divisor).max(1)
    }
}

/// How many blocks each workload's count is split into. Subjects take
/// turns block by block (A B B A …), so a machine that slows down or speeds
/// up during a run affects lockkit and its raw floor alike.
const BLOCKS: usize = 10;

/// Runs `workload` on every subject (lockkit, then its raw floor if any),
/// interleaved in blocks; one result per subject, in order.
pub(crate) async fn run(
    workload: Workload,
    subjects: &[&dyn Service],
    counts: Counts,
) -> Outcome<Vec<Measured>> {
    let mut tallies = Vec::with_capacity(subjects.len());
    for subject in subjects {
        tallies.push(Tally::start(workload, *subject, counts).await?);
    }
    for block in 0..BLOCKS {
        let order: Vec<usize> = if block % 2 == 0 {
            (0..tallies.len()).collect()
        } else {
            (0..tallies.len()).rev().collect()
        };
        for index in order {
            tallies[index].block(workload, counts).await?;
        }
    }
    Ok(tallies.into_iter().map(Tally::finish).collect())
}

/// One subject's clients and what its blocks measured so far.
struct Tally {
    clients: Vec<Arc<dyn Subject>>,
    latency: Histogram<u64>,
    operations: usize,
    busy: Duration,
    per_client: Vec<usize>,
    w2_round: usize,
    /// W1's 1,000 names, made before the clock starts.
    w1_names: Vec<String>,
}

impl Tally {
    async fn start(workload: Workload, service: &dyn Service, counts: Counts) -> Outcome<Self> {
        let clients = match workload {
            Workload::W1 | Workload::W3 => vec![service.client().await?],
            Workload::W2 => {
                let mut clients = Vec::with_capacity(W2_CLIENTS);
                for _ in 0..W2_CLIENTS {
                    clients.push(service.client().await?);
                }
                clients
            }
        };
        let w1_names: Vec<String> = match workload {
            Workload::W1 => (0..W1_NAMES).map(|i| format!("bench:w1:{i}")).collect(),
            Workload::W2 | Workload::W3 => Vec::new(),
        };
        if workload == Workload::W1 {
            for i in 0..counts.of(500) {
                clients[0].pair(&w1_names[i % W1_NAMES]).await?;
            }
        }
        let per_client = vec![0; clients.len()];
        let mut tally = Self {
            clients,
            latency: histogram(),
            operations: 0,
            busy: Duration::ZERO,
            per_client,
            w2_round: 0,
            w1_names,
        };
        if workload == Workload::W2 {
            // One untimed block: whatever a client sets up at its first
            // contended acquire (a connection to wait on) is not the handoff.
            tally.w2_block(counts.of(2_000) / BLOCKS).await?;
            tally.latency.reset();
            tally.per_client.fill(0);
            tally.operations = 0;
        }
        Ok(tally)
    }

    async fn block(&mut self, workload: Workload, counts: Counts) -> Outcome<()> {
        let started = Instant::now();
        let latencies = match workload {
            Workload::W1 => {
                self.w1_block(counts.of(5_000) / BLOCKS).await?;
                Vec::new()
            }
            Workload::W2 => {
                // Its per-client histograms stay inside the clock: without
                // their allocation, memory's clients stop contending at all
                // (one takes a block alone); see the README.
                self.w2_block(counts.of(2_000) / BLOCKS).await?;
                Vec::new()
            }
            Workload::W3 => self.w3_block(counts.of(20_000) / BLOCKS).await?,
        };
        self.busy += started.elapsed();
        // After the clock stops: a histogram per W3 task would cost every
        // block 64 of them to clear and merge (23 MB), timed with the subject.
        for micros in latencies.into_iter().flatten() {
            self.latency.saturating_record(micros);
        }
        Ok(())
    }

    fn finish(self) -> Measured {
        let fairness = (self.per_client.len() > 1).then(|| {
            let most = *self.per_client.iter().max().unwrap_or(&0) as f64;
            let least = *self.per_client.iter().min().unwrap_or(&0) as f64;
            if least == 0.0 {
                f64::INFINITY
            } else {
                most / least
            }
        });
        Measured {
            rate: self.operations as f64 / self.busy.as_secs_f64(),
            latency: self.latency,
            fairness,
        }
    }

    /// W1: one client, pairs one after another on `bench:w1:<i mod 1000>`.
    async fn w1_block(&mut self, pairs: usize) -> Outcome<()> {
        let client = &self.clients[0];
        for _ in 0..pairs {
            let name = &self.w1_names[self.operations % W1_NAMES];
            let one = Instant::now();
            client.pair(name).await?;
            self.latency.saturating_record(micros(one.elapsed()));
            self.operations += 1;
        }
        Ok(())
    }

    /// W2: every client contends for one name, hold 0, until the block's
    /// acquisitions are taken.
    async fn w2_block(&mut self, acquisitions: usize) -> Outcome<()> {
        // A fresh name per block: a block never inherits the last one's queue.
        self.w2_round += 1;
        let name = format!("bench:w2:{}", self.w2_round);
        let taken = Arc::new(AtomicUsize::new(0));
        // Every client is running before the first acquire, so none takes a
        // block's acquisitions alone while the others are still being spawned.
        let start = Arc::new(Barrier::new(self.clients.len()));
        let mut tasks = Vec::with_capacity(self.clients.len());
        for client in &self.clients {
            let (client, taken, name) = (Arc::clone(client), Arc::clone(&taken), name.clone());
            let start = Arc::clone(&start);
            tasks.push(tokio::spawn(async move {
                let mut latency = histogram();
                let mut mine = 0usize;
                start.wait().await;
                while taken.fetch_add(1, Ordering::Relaxed) < acquisitions {
                    let waited = client.contend(&name).await?;
                    latency.saturating_record(micros(waited));
                    mine += 1;
                }
                Outcome::Ok((mine, latency))
            }));
        }
        for (index, task) in tasks.into_iter().enumerate() {
            let (mine, theirs) = task.await.map_err(|error| error.to_string())??;
            self.latency
                .add(theirs)
                .map_err(|error| error.to_string())?;
            self.per_client[index] += mine;
            self.operations += mine;
        }
        Ok(())
    }

    /// W3: 64 tasks on 64 names over the one client.
    async fn w3_block(&mut self, pairs: usize) -> Outcome<Vec<Vec<u64>>> {
        let client = &self.clients[0];
        let done = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::with_capacity(W3_TASKS);
        for task in 0..W3_TASKS {
            let (client, done) = (Arc::clone(client), Arc::clone(&done));
            tasks.push(tokio::spawn(async move {
                let name = format!("bench:w3:{task}");
                let mut latency = Vec::new();
                while done.fetch_add(1, Ordering::Relaxed) < pairs {
                    let one = Instant::now();
                    client.pair(&name).await?;
                    latency.push(micros(one.elapsed()));
                }
                Outcome::Ok(latency)
            }));
        }
        let mut latencies = Vec::with_capacity(tasks.len());
        for task in tasks {
            let theirs = task.await.map_err(|error| error.to_string())??;
            self.operations += theirs.len();
            latencies.push(theirs);
        }
        Ok(latencies)
    }
}

const W1_NAMES: usize = 1000;
const W2_CLIENTS: usize = 16;
const W3_TASKS: usize = 64;

fn histogram() -> Histogram<u64> {
    // Microseconds, up to an hour, three significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}
