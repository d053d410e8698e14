//! The faults: each scenario's nemesis, done to real processes and servers.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::clock::now_ns;
use crate::history::Event;
use crate::plan::{Backend, Scenario, SESSION};
use crate::proxy::Proxy;
use crate::run::{application_name, ClientProcess};
use crate::servers::Servers;

/// How long a paused holder or server stays paused: three leases, so its
/// lease has surely ended by the server's clock.
const PAUSES: u32 = 3;

/// The longest the nemesis waits for a client to hold the lock, or to stop
/// itself at its next write.
const FIND: Duration = Duration::from_secs(20);

/// Between the steps of a failover: long enough for clients to be granted
/// (on the primary the replica no longer hears, then on the promoted replica).
const FAILOVER_STEP: Duration = Duration::from_millis(1500);

/// How long a killed server stays down.
const SERVER_DOWN: Duration = Duration::from_secs(1);

/// How long the lock stays free before the failover's cut: longer than a
/// grant in flight when the clients were told to fall quiet takes to show.
const QUIET: Duration = Duration::from_millis(300);

/// How long a jumped wall clock stays jumped, each way.
const JUMP: Duration = Duration::from_secs(3);

/// The nemesis of one run.
pub(crate) struct Nemesis<'a> {
    pub(crate) servers: &'a Servers,
    pub(crate) backend: Backend,
    pub(crate) scenario: Scenario,
    pub(crate) history: &'a Arc<Mutex<Vec<Event>>>,
    pub(crate) clients: &'a mut [ClientProcess],
    pub(crate) proxy: Option<&'a Proxy>,
    pub(crate) faketime: Option<&'a Path>,
}

impl Nemesis<'_> {
    /// Injects the scenario's fault and heals it.
    pub(crate) async fn inject(&mut self) -> Result<(), String> {
        let pause = self.backend.lease_bound(self.scenario) * PAUSES;
        match self.scenario {
            Scenario::None => Ok(()),
            Scenario::ClientPause => self.client_pause(pause).await,
            Scenario::ClientKill => {
                let victim = self.holder().await?;
                self.signal(victim, Signal::SIGKILL)?;
                let at_ns = self.started(Some(victim));
                self.record(Event::Killed {
                    at_ns,
                    client: victim,
                });
                // One instant: the fault's end is its start.
                self.record(Event::FaultEnded { at_ns });
                Ok(())
            }
            Scenario::SessionExpiry => {
                let victim = self.victim_in_long_turn(self.any_client(), FIND).await?;
                self.signal(victim, Signal::SIGSTOP)?;
                self.started(Some(victim));
                // The fault: a client stopped past its session's timeout.
                tokio::time::sleep(SESSION * PAUSES).await;
                self.signal(victim, Signal::SIGCONT)?;
                self.ended();
                Ok(())
            }
            Scenario::ServerKill => {
                let server = self.server()?;
                let victim = self.victim_in_long_turn(self.any_client(), FIND).await?;
                self.started(Some(victim));
                let killed = self.servers.services("kill", Some(server)).await;
                // The fault: the server down a moment before it restarts.
                tokio::time::sleep(SERVER_DOWN).await;
                let started = self.servers.services("start", Some(server)).await;
                self.ended();
                killed.and(started).map(drop)
            }
            Scenario::ServerPause => {
                let server = self.server()?;
                let victim = self.victim_in_long_turn(self.any_client(), FIND).await?;
                self.servers.services("pause", Some(server)).await?;
                self.started(Some(victim));
                // The fault: a server stopped past every lease's TTL.
                tokio::time::sleep(pause).await;
                let resumed = self.servers.services("resume", Some(server)).await;
                self.ended();
                resumed.map(drop)
            }
            Scenario::TerminateBackend => self.terminate_backend().await,
            Scenario::Failover | Scenario::FailoverMinReplicas => self.failover().await,
            Scenario::MajorityRestart => self.majority_restart().await,
            Scenario::LeaderKill => {
                let prefix = if self.backend == Backend::Etcd {
                    "etcd-"
                } else {
                    "zk-"
                };
                let victim = self.victim_in_long_turn(self.any_client(), FIND).await?;
                let leader = self.servers.leader(prefix).await?;
                self.started(Some(victim));
                let killed = self.servers.services("kill", Some(&leader)).await;
                // The fault: the cluster without its old leader, electing another.
                tokio::time::sleep(SESSION).await;
                let started = self.servers.services("start", Some(&leader)).await;
                self.ended();
                killed.and(started).map(drop)
            }
            Scenario::MemberRestart => {
                let victim = self.victim_in_long_turn(self.any_client(), FIND).await?;
                self.started(Some(victim));
                for member in ["etcd-1", "etcd-2", "etcd-3"] {
                    self.servers.services("stop", Some(member)).await?;
                    self.servers.services("start", Some(member)).await?;
                }
                self.ended();
                Ok(())
            }
            Scenario::ClockJump => self.clock_jump().await,
        }
    }

    /// A holder stops itself between its lease check and its write.
    async fn client_pause(&mut self, pause: Duration) -> Result<(), String> {
        let index = fastrand::usize(..self.clients.len());
        let client = &mut self.clients[index];
        let (victim, pid) = (client.first_id, client.pid);
        client.command("pause").await;
        let deadline = Instant::now() + FIND;
        while !stopped(pid) {
            if Instant::now() > deadline {
                return Err(format!(
                    "client {victim} did not stop itself at a write within {FIND:?}"
                ));
            }
            // Polled: a stopped process tells no one but /proc.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.started(Some(victim));
        // The fault: the process pause of Kleppmann's critique.
        tokio::time::sleep(pause).await;
        self.signal(victim, Signal::SIGCONT)?;
        self.ended();
        Ok(())
    }

    /// `pg_terminate_backend` of the run's session holding the lock (the
    /// run's sessions carry its `application_name`).
    async fn terminate_backend(&mut self) -> Result<(), String> {
        let (session, connection) =
            tokio_postgres::connect(self.servers.postgres_url()?, tokio_postgres::NoTls)
                .await
                .map_err(|error| format!("the nemesis' PostgreSQL session: {error}"))?;
        let connection = tokio::spawn(connection);
        let victim = self.victim_in_long_turn(self.any_client(), FIND).await?;
        let deadline = Instant::now() + FIND;
        let outcome = loop {
            let at_ns = now_ns();
            let terminated = session
                .query(
                    "SELECT pg_terminate_backend(l.pid) FROM pg_locks l \
                     JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = $1",
                    &[&application_name()],
                )
                .await
                .map_err(|error| format!("pg_terminate_backend: {error}"))?;
            if !terminated.is_empty() {
                self.record(Event::FaultStarted {
                    at_ns,
                    fault: self.scenario.name().to_owned(),
                    victim: Some(victim),
                });
                self.ended();
                break Ok(());
            }
            if Instant::now() > deadline {
                break Err(format!("no session held an advisory lock within {FIND:?}"));
            }
            // Polled: between two grants no session holds one.
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        connection.abort();
        outcome
    }

    /// The replica is cut off from the primary (its replication runs
    /// through a proxy that stops forwarding), the primary grants what it
    /// will never hear, the clients are cut off from the primary, the
    /// replica is promoted and the clients' proxy points at it, and the old
    /// primary rejoins as its replica — what Sentinel does.
    async fn failover(&mut self) -> Result<(), String> {
        let (primary, replica) = self.servers.failover_pair()?;
        let clients = self
            .proxy
            .ok_or("the failover scenario runs behind its proxy")?;
        let address = |server: &str| {
            server
                .parse()
                .map_err(|error| format!("the failover pair's {server}: {error}"))
        };
        let replication = Proxy::start(address(&primary)?)
            .await
            .map_err(|error| format!("the replication proxy: {error}"))?;
        let through = replication.address();
        redis_command(
            &replica,
            "REPLICAOF",
            &["127.0.0.1", &through.port().to_string()],
        )
        .await?;
        linked(&replica).await?;
        // The lock free, and the replica knowing it: the clients pause
        // between turns, and WAIT sees the replica caught up.
        self.command_all("quiet").await;
        let deadline = Instant::now() + FIND;
        while !self.quiet_for(QUIET) {
            if Instant::now() > deadline {
                return Err(format!("the clients did not fall quiet within {FIND:?}"));
            }
            // Polled: the last turn ends through the clients' events.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        redis_command(&primary, "WAIT", &["1", "1000"]).await?;
        replication.cut();
        let at_ns = now_ns();
        // The fault's first part: one client is granted on the primary,
        // which the replica never hears (with min_replicas that grant is
        // refused, and no victim is found); the others queue behind it.
        let index = fastrand::usize(..self.clients.len());
        self.clients[index].command("resume").await;
        let victim = self.victim_in_long_turn(index, FAILOVER_STEP).await.ok();
        self.record(Event::FaultStarted {
            at_ns,
            fault: self.scenario.name().to_owned(),
            victim,
        });
        self.command_all("resume").await;
        clients.cut();
        redis_command(&replica, "REPLICAOF", &["NO", "ONE"]).await?;
        clients.point_to(address(&replica)?);
        // The fault's second part: clients on the promoted replica while the
        // old primary, cut off, still believes it is one.
        tokio::time::sleep(FAILOVER_STEP).await;
        let (host, port) = replica.split_once(':').unwrap_or((&replica, "6379"));
        redis_command(&primary, "REPLICAOF", &[host, port]).await?;
        self.ended();
        Ok(())
    }

    /// Kleppmann's Redlock scenario: two of five nodes down, then one of
    /// the three that granted killed, and the three started empty.
    async fn majority_restart(&mut self) -> Result<(), String> {
        let at_ns = now_ns();
        for node in ["redlock-4", "redlock-5"] {
            self.servers.services("kill", Some(node)).await?;
        }
        // The fault's first part: a grant on three nodes only.
        let victim = self.victim_in_long_turn(self.any_client(), FIND).await?;
        self.record(Event::FaultStarted {
            at_ns,
            fault: self.scenario.name().to_owned(),
            victim: Some(victim),
        });
        self.servers.services("kill", Some("redlock-3")).await?;
        for node in ["redlock-3", "redlock-4", "redlock-5"] {
            self.servers.services("start", Some(node)).await?;
        }
        self.ended();
        Ok(())
    }

    /// Every client's wall clock an hour ahead, then an hour behind.
    async fn clock_jump(&mut self) -> Result<(), String> {
        let file = self
            .faketime
            .ok_or("the clock-jump scenario runs under libfaketime")?;
        let set = |offset: &str| {
            std::fs::write(file, format!("{offset}\n"))
                .map_err(|error| format!("{}: {error}", file.display()))
        };
        self.started(None);
        set("+1h")?;
        // The fault: a wall clock an hour off, each way.
        tokio::time::sleep(JUMP).await;
        set("-1h")?;
        tokio::time::sleep(JUMP).await;
        set("+0")?;
        self.ended();
        Ok(())
    }

    /// The server of a single-server backend.
    fn server(&self) -> Result<&'static str, String> {
        match self.backend {
            Backend::Redis => Ok("redis"),
            Backend::Postgres => Ok("postgres"),
            other => Err(format!("{other} has no single server to fault")),
        }
    }

    /// A client told to make its next grant a long turn, once it holds:
    /// the fault then strikes a holder in the middle of its work.
    async fn victim_in_long_turn(&mut self, index: usize, within: Duration) -> Result<u32, String> {
        let victim = self.clients[index].first_id;
        // The client says which grant is the long one: a grant that was on
        // its way when the command came is a short turn.
        let mark = self.lock_history().len();
        self.clients[index].command("long").await;
        let deadline = Instant::now() + within;
        loop {
            {
                let history = self.lock_history();
                let long = history[mark..].iter().find_map(|event| match event {
                    Event::LongTurn { client, token, .. } if *client == victim => Some(*token),
                    _ => None,
                });
                if long.is_some_and(|token| holds(&history, victim, token)) {
                    return Ok(victim);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "client {victim} did not hold the lock within {within:?}"
                ));
            }
            // Polled: the grant arrives through the client's events.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Whether no one holds the lock, and no one was granted it within `quiet`.
    fn quiet_for(&self, quiet: Duration) -> bool {
        let history = self.lock_history();
        let last_grant = history.iter().rev().find_map(|event| match event {
            Event::Granted { at_ns, .. } => Some(*at_ns),
            _ => None,
        });
        let since = Duration::from_nanos(now_ns().saturating_sub(last_grant.unwrap_or(0)));
        holder(&history).is_none() && since >= quiet
    }

    /// A client process at random.
    fn any_client(&self) -> usize {
        fastrand::usize(..self.clients.len())
    }

    /// Sends a command to every client process.
    async fn command_all(&mut self, line: &str) {
        for client in self.clients.iter_mut() {
            client.command(line).await;
        }
    }

    /// The client holding the lock now (the latest grant not yet ended).
    async fn holder(&self) -> Result<u32, String> {
        let deadline = Instant::now() + FIND;
        loop {
            if let Some(holder) = holder(&self.lock_history()) {
                return Ok(holder);
            }
            if Instant::now() > deadline {
                return Err(format!("no client held the lock within {FIND:?}"));
            }
            // Polled: between two grants no one holds it.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn signal(&self, client: u32, signal: Signal) -> Result<(), String> {
        let process = self
            .clients
            .iter()
            .find(|process| process.first_id == client)
            .ok_or_else(|| format!("no client process {client}"))?;
        kill(Pid::from_raw(process.pid), signal)
            .map_err(|error| format!("{signal} to client {client}: {error}"))
    }

    fn lock_history(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        self.history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, event: Event) {
        self.lock_history().push(event);
    }

    /// Records the fault's start; when it was.
    fn started(&self, victim: Option<u32>) -> u64 {
        let at_ns = now_ns();
        self.record(Event::FaultStarted {
            at_ns,
            fault: self.scenario.name().to_owned(),
            victim,
        });
        at_ns
    }

    fn ended(&self) {
        self.record(Event::FaultEnded { at_ns: now_ns() });
    }
}

/// The client whose latest grant has not ended, if any.
fn holder(events: &[Event]) -> Option<u32> {
    let mut holding: Option<(u32, u64)> = None;
    for event in events {
        match event {
            Event::Granted { client, token, .. } => holding = Some((*client, *token)),
            Event::Releasing { client, token, .. } | Event::Lost { client, token, .. }
                if holding == Some((*client, *token)) =>
            {
                holding = None;
            }
            _ => {}
        }
    }
    holding.map(|(client, _)| client)
}

/// Whether `client`'s grant of `token` has not ended.
fn holds(events: &[Event], client: u32, token: u64) -> bool {
    !events.iter().any(|event| match event {
        Event::Releasing {
            client: c,
            token: t,
            ..
        }
        | Event::Lost {
            client: c,
            token: t,
            ..
        } => *c == client && *t == token,
        _ => false,
    })
}

/// Whether a process is stopped (state `T` in /proc).
fn stopped(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|state| state == "T"))
        })
        .unwrap_or(false)
}

/// A connection to the Redis server at `host:port`.
async fn redis_connection(address: &str) -> Result<redis::aio::MultiplexedConnection, String> {
    let client = redis::Client::open(format!("redis://{address}"))
        .map_err(|error| format!("{address}: {error}"))?;
    client
        .get_multiplexed_async_connection()
        .await
        .map_err(|error| format!("{address}: {error}"))
}

/// One command, `name` with `args`, to the Redis server at `host:port`.
async fn redis_command(address: &str, name: &str, args: &[&str]) -> Result<(), String> {
    let mut connection = redis_connection(address).await?;
    redis::cmd(name)
        .arg(args)
        .query_async::<()>(&mut connection)
        .await
        .map_err(|error| format!("{name} {} on {address}: {error}", args.join(" ")))
}

/// Puts the failover pair back: its first server primary, its second the
/// replica of it, linked.
pub(crate) async fn restore_failover_pair(servers: &Servers) -> Result<(), String> {
    let (primary, replica) = servers.failover_pair()?;
    redis_command(&primary, "REPLICAOF", &["NO", "ONE"]).await?;
    let (host, port) = primary.split_once(':').unwrap_or((&primary, "6379"));
    redis_command(&replica, "REPLICAOF", &[host, port]).await?;
    linked(&replica).await
}

/// Waits until the Redis replica at `replica` reports its link to its primary up.
async fn linked(replica: &str) -> Result<(), String> {
    let mut connection = redis_connection(replica).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut connection)
            .await
            .map_err(|error| format!("INFO on {replica}: {error}"))?;
        if info.contains("master_link_status:up") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{replica} did not link to its primary within 30 s"));
        }
        // Polled: the link comes up after a full resync.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Puts back what a fault cut short (an error, an interrupt) left broken:
/// resumes and starts its servers (both harmless on a server that runs).
/// The failover pair is put back by [`restore_failover_pair`]; stopped
/// clients are continued when they are told to stop.
pub(crate) async fn heal(servers: &Servers, backend: Backend, scenario: Scenario) {
    let touched: &[&str] = match (backend, scenario) {
        (Backend::Redis, Scenario::ServerKill | Scenario::ServerPause) => &["redis"],
        (Backend::Postgres, Scenario::ServerKill | Scenario::ServerPause) => &["postgres"],
        (Backend::Redlock, Scenario::MajorityRestart) => &["redlock-3", "redlock-4", "redlock-5"],
        (Backend::Etcd, Scenario::LeaderKill | Scenario::MemberRestart) => {
            &["etcd-1", "etcd-2", "etcd-3"]
        }
        (Backend::Zk, Scenario::LeaderKill) => &["zk-1", "zk-2", "zk-3"],
        _ => &[],
    };
    for server in touched {
        // Resuming a server that is not paused, or is down, fails harmlessly.
        let _ = servers.services("resume", Some(server)).await;
        if let Err(error) = servers.services("start", Some(server)).await {
            eprintln!("lockkit-safety: {server} could not be started again: {error}");
        }
    }
}
