//! lockkit-bench: the workloads of DESIGN.md §7 on each backend, with the
//! raw floor — the same server commands issued with the driver directly —
//! and the peers a user would pick instead (rslock, a hand-rolled lock, a
//! plain advisory-lock loop), measured in the same process and run.
//!
//! ```text
//! cargo run -p lockkit-bench --release -- [--backend memory|redis|redlock|postgres|etcd|zk|all]
//!     [--workload w1|w2|w3|all] [--quick] [--redis-url URL] [--redlock-urls URL,URL,…]
//!     [--postgres-url URL]
//!     [--etcd-url etcd://h1:2379,h2:2379,…] [--zk-url zk://h1:2181,h2:2182,…]
//! ```
//!
//! Server addresses come from the `LOCKKIT_TEST_*` variables, as for the
//! tests (`scripts/services env`), or from the flags. Prints a markdown
//! table and writes the rows as JSON under `target/bench/`.

mod etcd;
mod redlock;
mod report;
mod subjects;
mod workloads;
mod zk;

use std::process::ExitCode;

use lockkit::{LockConfig, Locker, OwnerToken};

use crate::etcd::{EtcdLockRpc, RawEtcd};
use crate::redlock::RawRedlock;
use crate::report::Row;
use crate::subjects::{Lockkit, RawPostgres, RawRedis, Rslock, Service};
use crate::workloads::{Counts, Workload};
use crate::zk::{RawZk, ZkDriverLock};

const USAGE: &str = "usage: lockkit-bench [--backend memory|redis|redlock|postgres|etcd|zk|all] [--workload w1|w2|w3|all] [--quick] [--redis-url URL] [--redlock-urls redis://h:p,redis://h:p,…] [--postgres-url URL] [--etcd-url URL] [--zk-url URL]";

struct Plan {
    backends: Vec<&'static str>,
    workloads: Vec<Workload>,
    counts: Counts,
    redis_url: Option<String>,
    redlock_urls: Option<String>,
    postgres_url: Option<String>,
    etcd_url: Option<String>,
    zk_url: Option<String>,
}

const BACKENDS: [&str; 6] = ["memory", "redis", "redlock", "postgres", "etcd", "zk"];

fn parse(mut args: impl Iterator<Item = String>) -> Result<Plan, String> {
    let mut plan = Plan {
        backends: BACKENDS.to_vec(),
        workloads: Workload::ALL.to_vec(),
        counts: Counts { divisor: 1 },
        redis_url: std::env::var("LOCKKIT_TEST_REDIS_URL").ok(),
        redlock_urls: std::env::var("LOCKKIT_TEST_REDLOCK_URLS").ok(),
        postgres_url: std::env::var("LOCKKIT_TEST_POSTGRES_URL").ok(),
        // scripts/services lists the members as http:// endpoints.
        etcd_url: std::env::var("LOCKKIT_TEST_ETCD_ENDPOINTS")
            .ok()
            .map(|endpoints| format!("etcd://{}", endpoints.replace("http://", ""))),
        zk_url: std::env::var("LOCKKIT_TEST_ZK_CONNECT")
            .ok()
            .map(|connect| format!("zk://{connect}")),
    };
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--backend" => {
                plan.backends = match value("--backend")?.as_str() {
                    "all" => BACKENDS.to_vec(),
                    other => match BACKENDS.iter().find(|backend| **backend == other) {
                        Some(backend) => vec![*backend],
                        None => {
                            return Err(format!(
                        "--backend: unknown backend `{other}` (memory, redis, redlock, postgres, etcd, zk, all)"
                    ))
                        }
                    },
                }
            }
            "--workload" => {
                plan.workloads = match value("--workload")?.as_str() {
                    "all" => Workload::ALL.to_vec(),
                    "w1" => vec![Workload::W1],
                    "w2" => vec![Workload::W2],
                    "w3" => vec![Workload::W3],
                    other => {
                        return Err(format!(
                            "--workload: unknown workload `{other}` (w1, w2, w3, all)"
                        ))
                    }
                }
            }
            "--quick" => plan.counts = Counts { divisor: 10 },
            "--redis-url" => plan.redis_url = Some(value("--redis-url")?),
            "--redlock-urls" => plan.redlock_urls = Some(value("--redlock-urls")?),
            "--postgres-url" => plan.postgres_url = Some(value("--postgres-url")?),
            "--etcd-url" => plan.etcd_url = Some(value("--etcd-url")?),
            "--zk-url" => plan.zk_url = Some(value("--zk-url")?),
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(plan)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let plan = match parse(std::env::args().skip(1)) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(&plan).await {
        Ok(rows) => {
            print!("{}", report::markdown(&rows));
            match report::write_json(&rows) {
                Ok(path) => {
                    eprintln!("rows written to {}", path.display());
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("could not write the JSON rows: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(message) => {
            eprintln!("lockkit-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A backend without a server address is skipped with the reason — or,
/// under `LOCKKIT_TEST_REQUIRE=1` as in `scripts/test`, fails the run.
fn skip(backend: &str, variable: &str, flag: &str) -> Result<(), String> {
    let why = format!("{variable} is not set (run `scripts/services up`, or pass {flag})");
    if std::env::var("LOCKKIT_TEST_REQUIRE").as_deref() == Ok("1") {
        return Err(format!("{backend}: {why}, and LOCKKIT_TEST_REQUIRE=1"));
    }
    eprintln!("{backend}: skipped, {why}");
    Ok(())
}

async fn run(plan: &Plan) -> Result<Vec<Row>, String> {
    let namespace = format!(
        "lockkit-bench-{}",
        &OwnerToken::generate().map_err(|e| e.to_string())?.to_hex()[..12]
    );
    let mut rows = Vec::new();
    for &backend in &plan.backends {
        // lockkit, its raw floor, and the peers a user would pick instead.
        let mut peers: Vec<(&'static str, Box<dyn Service>)> = Vec::new();
        let (service, raw): (Box<dyn Service>, Option<Box<dyn Service>>) = match backend {
            "memory" => (
                Box::new(Lockkit {
                    config: LockConfig::new("memory://"),
                    shared: Some(Locker::memory()),
                }),
                None,
            ),
            "redis" => {
                let Some(url) = plan.redis_url.clone() else {
                    skip("redis", "LOCKKIT_TEST_REDIS_URL", "--redis-url")?;
                    continue;
                };
                let raw = |plain| RawRedis {
                    url: url.clone(),
                    namespace: namespace.clone(),
                    plain,
                };
                peers.push((
                    "rslock",
                    Box::new(Rslock {
                        urls: vec![url.clone()],
                        namespace: namespace.clone(),
                    }),
                ));
                peers.push(("plain", Box::new(raw(true))));
                (
                    Lockkit::at(url.clone(), &namespace),
                    Some(Box::new(raw(false))),
                )
            }
            "redlock" => {
                let Some(urls) = plan.redlock_urls.clone() else {
                    skip("redlock", "LOCKKIT_TEST_REDLOCK_URLS", "--redlock-urls")?;
                    continue;
                };
                let urls: Vec<String> = urls.split(',').map(str::to_owned).collect();
                let members = urls
                    .iter()
                    .map(|url| url.trim_start_matches("redis://"))
                    .collect::<Vec<_>>()
                    .join(",");
                peers.push((
                    "rslock",
                    Box::new(Rslock {
                        urls: urls.clone(),
                        namespace: namespace.clone(),
                    }),
                ));
                let raw = RawRedlock {
                    urls,
                    namespace: namespace.clone(),
                };
                (
                    Lockkit::at(format!("redlock://{members}"), &namespace),
                    Some(Box::new(raw)),
                )
            }
            "postgres" => {
                let Some(url) = plan.postgres_url.clone() else {
                    skip("postgres", "LOCKKIT_TEST_POSTGRES_URL", "--postgres-url")?;
                    continue;
                };
                // The floor is the plain advisory-lock loop a user would
                // write: it is the peer too, measured once.
                let raw = RawPostgres {
                    url: url.clone(),
                    namespace: namespace.clone(),
                    // As many as lockkit's shared sessions by default.
                    connections: 2,
                };
                (Lockkit::at(url, &namespace), Some(Box::new(raw)))
            }
            "etcd" => {
                let Some(url) = plan.etcd_url.clone() else {
                    skip("etcd", "LOCKKIT_TEST_ETCD_ENDPOINTS", "--etcd-url")?;
                    continue;
                };
                let members: Vec<String> = url
                    .trim_start_matches("etcd://")
                    .split(',')
                    .map(str::to_owned)
                    .collect();
                peers.push((
                    "lock-rpc",
                    Box::new(EtcdLockRpc {
                        members: members.clone(),
                        namespace: namespace.clone(),
                    }),
                ));
                let raw = RawEtcd {
                    members,
                    namespace: namespace.clone(),
                };
                (Lockkit::at(url, &namespace), Some(Box::new(raw)))
            }
            "zk" => {
                let Some(url) = plan.zk_url.clone() else {
                    skip("zk", "LOCKKIT_TEST_ZK_CONNECT", "--zk-url")?;
                    continue;
                };
                // Every subject's sessions on the URL's first member:
                // zookeeper-client picks a member at random, and a session
                // on the leader or on a follower moves the rates more than
                // what the subjects differ by. The writes still go through
                // the ensemble's quorum. No chroot: the floor and the peer
                // work under the namespace, as lockkit does.
                let servers = url
                    .trim_start_matches("zk://")
                    .split(['/', ','])
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let url = format!("zk://{servers}");
                peers.push((
                    "zk-lock",
                    Box::new(ZkDriverLock {
                        servers: servers.clone(),
                        namespace: namespace.clone(),
                    }),
                ));
                let raw = RawZk {
                    servers,
                    namespace: namespace.clone(),
                };
                (Lockkit::at(url, &namespace), Some(Box::new(raw)))
            }
            other => unreachable!("unknown backend {other}"),
        };
        for &workload in &plan.workloads {
            let mut subjects: Vec<&dyn Service> = vec![service.as_ref()];
            subjects.extend(raw.as_deref());
            subjects.extend(peers.iter().map(|(_, peer)| peer.as_ref()));
            let measured = workloads::run(workload, &subjects, plan.counts)
                .await
                .map_err(|error| format!("{backend} {}: {error}", workload.name()))?;
            let floor = raw.as_ref().map(|_| &measured[1]);
            let first_peer = 1 + usize::from(raw.is_some());
            let mut compared: Vec<(&str, &workloads::Measured)> = peers
                .iter()
                .zip(&measured[first_peer..])
                .map(|((name, _), measured)| (*name, measured))
                .collect();
            if backend == "postgres" {
                compared.extend(floor.map(|floor| ("plain", floor)));
            }
            rows.push(Row::new(backend, workload, &measured[0], floor, &compared));
            if let Some(floor) = floor {
                rows.push(Row::raw(backend, workload, floor));
            }
            for (name, measured) in &compared[..peers.len()] {
                rows.push(Row::peer(backend, name, workload, measured));
            }
        }
    }
    Ok(rows)
}
