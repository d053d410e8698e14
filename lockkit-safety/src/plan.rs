//! What a run is: backends, scenarios, which scenario applies to which
//! backend, the servers they run against, and what each backend promises.

use std::fmt;
use std::time::Duration;

use clap::ValueEnum;
use serde::Serialize;

use crate::history::Report;

/// A lockkit backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// The in-process memory backend (its clients are tasks of one process).
    Memory,
    /// Single Redis.
    Redis,
    /// Redlock over five independent Redis servers.
    Redlock,
    /// PostgreSQL advisory locks.
    Postgres,
    /// etcd leases.
    Etcd,
    /// ZooKeeper ephemeral sequential nodes.
    Zk,
}

/// A nemesis: the fault a run injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// No fault: the baseline.
    None,
    /// A holder stops itself (SIGSTOP) between its lease check and its
    /// write, for longer than its lease lasts, then continues (SIGCONT):
    /// the process pause of Kleppmann's critique.
    ClientPause,
    /// A holder is killed (SIGKILL) while it holds.
    ClientKill,
    /// The server is killed (SIGKILL) and started again. The test bed's
    /// Redis servers keep no data on disk: for Redis this is a restart
    /// without persistence.
    ServerKill,
    /// The server is stopped (SIGSTOP) longer than a lease lasts, then continued.
    ServerPause,
    /// Redis failover without `min_replicas`: the replica is cut off, the
    /// primary grants, the primary is cut off, the replica is promoted and
    /// the clients sent to it, the old primary rejoins as its replica.
    Failover,
    /// The same failover with `min_replicas = 1`.
    FailoverMinReplicas,
    /// `pg_terminate_backend` of the holder's session.
    TerminateBackend,
    /// Two of the five Redlock nodes go down; then one of the three that
    /// granted is killed and the three are started empty (Kleppmann's
    /// restart without persistence).
    MajorityRestart,
    /// The etcd or ZooKeeper leader is killed (SIGKILL) and started again.
    LeaderKill,
    /// Every etcd member in turn is stopped and started again.
    MemberRestart,
    /// A holder is stopped (SIGSTOP) at a random moment for three session
    /// timeouts, so the ensemble expires its session, then continued.
    SessionExpiry,
    /// Every client's wall clock jumps an hour forward, then an hour back
    /// (libfaketime); the monotonic clock is left alone. Must change nothing.
    ClockJump,
}

impl Scenario {
    /// The scenario's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientPause => "client-pause",
            Self::ClientKill => "client-kill",
            Self::ServerKill => "server-kill",
            Self::ServerPause => "server-pause",
            Self::Failover => "failover",
            Self::FailoverMinReplicas => "failover-min-replicas",
            Self::TerminateBackend => "terminate-backend",
            Self::MajorityRestart => "majority-restart",
            Self::LeaderKill => "leader-kill",
            Self::MemberRestart => "member-restart",
            Self::SessionExpiry => "session-expiry",
            Self::ClockJump => "clock-jump",
        }
    }

    /// Every acquire's TTL in this scenario. A failover must fit inside a
    /// lease for a grant to be lost to it, as it does with the TTLs of
    /// production (10–30 s) and Sentinel's seconds-long failovers: those
    /// scenarios use [`FAILOVER_TTL`]; every other one [`TTL`].
    pub fn ttl(self) -> Duration {
        match self {
            Self::Failover | Self::FailoverMinReplicas => FAILOVER_TTL,
            _ => TTL,
        }
    }

    /// Whether the fault ends a holder's lease before the holder can know:
    /// a pause past its lease, or a session ended by the server
    /// (`pg_terminate_backend`: lockkit-postgres' docs say the lease turns
    /// Lost when the connection dies, "because the server has already
    /// released its locks"). Every backend may then show an overlap, and
    /// fencing is what must save the resource.
    pub fn ends_a_lease_unseen(self) -> bool {
        matches!(
            self,
            Self::ClientPause | Self::SessionExpiry | Self::TerminateBackend
        )
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Backend {
    /// Every backend, in the report's order.
    pub const ALL: [Backend; 6] = [
        Self::Memory,
        Self::Redis,
        Self::Redlock,
        Self::Postgres,
        Self::Etcd,
        Self::Zk,
    ];

    /// The backend's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
            Self::Redlock => "redlock",
            Self::Postgres => "postgres",
            Self::Etcd => "etcd",
            Self::Zk => "zk",
        }
    }

    /// The scenarios that apply to this backend.
    pub fn scenarios(self) -> &'static [Scenario] {
        use Scenario::*;
        match self {
            // One process holds the whole lock table: pausing or killing a
            // client pauses or kills them all, and there is no server.
            Self::Memory => &[None, ClockJump],
            Self::Redis => &[
                None,
                ClientPause,
                ClientKill,
                ServerKill,
                ServerPause,
                Failover,
                FailoverMinReplicas,
                ClockJump,
            ],
            Self::Redlock => &[None, ClientPause, ClientKill, MajorityRestart, ClockJump],
            Self::Postgres => &[
                None,
                ClientPause,
                ClientKill,
                ServerKill,
                ServerPause,
                TerminateBackend,
                ClockJump,
            ],
            Self::Etcd => &[
                None,
                ClientPause,
                ClientKill,
                LeaderKill,
                MemberRestart,
                ClockJump,
            ],
            Self::Zk => &[
                None,
                ClientPause,
                ClientKill,
                LeaderKill,
                SessionExpiry,
                ClockJump,
            ],
        }
    }

    /// Whether the backend is a correctness lock with a linearizable
    /// fencing token (lockkit's safety class); Redis and Redlock are
    /// efficiency locks with best-effort tokens.
    pub fn is_correctness(self) -> bool {
        !matches!(self, Self::Redis | Self::Redlock)
    }

    /// How long a holder that stopped renewing keeps the lock at most in
    /// `scenario`: the TTL of a lease, or the session's timeout. PostgreSQL
    /// holds for as long as the session's connection lives; its figure
    /// bounds a pause.
    pub fn lease_bound(self, scenario: Scenario) -> Duration {
        match self {
            Self::Etcd | Self::Zk => SESSION,
            _ => scenario.ttl(),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Every acquire's TTL, with auto-renewal on.
pub const TTL: Duration = Duration::from_secs(1);

/// The test bed ZooKeeper's tick (`tickTime`): it expires sessions on ticks.
pub const ZK_TICK: Duration = Duration::from_secs(1);

/// The TTL of the failover scenarios (see [`Scenario::ttl`]).
pub const FAILOVER_TTL: Duration = Duration::from_secs(5);

/// The etcd session TTL and the ZooKeeper session timeout: the shortest
/// each accepts (etcd's lockkit minimum; twice ZooKeeper's tick of 1 s).
pub const SESSION: Duration = Duration::from_secs(2);

/// What a backend's docs promise in a scenario, and whether a result keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Promise {
    /// Two holders at once are within the docs' failure model here.
    pub overlaps_allowed: bool,
    /// A stale write may reach the resource: the tokens are best effort
    /// and the fault is one that loses them.
    pub stale_accepted_allowed: bool,
    /// The longest, in ms, from a holder's pause or kill until the lock is
    /// granted to another client: the holder's lease or session and the
    /// backend's own grain (the test bed's ZooKeeper expires sessions on
    /// ticks of 1 s) with a second to spare. `None` where no bound is
    /// promised (a paused PostgreSQL session holds its lock by design).
    pub regranted_within_ms: Option<f64>,
}

impl Promise {
    /// The promise of `backend`'s docs in `scenario`.
    pub fn of(backend: Backend, scenario: Scenario) -> Self {
        // A holder believes it holds after its lease ended: every backend
        // may overlap; fencing must then refuse its writes.
        // Except a paused PostgreSQL client: its session, and its lock,
        // outlive any pause (there is no TTL), so nobody else is granted.
        let unseen = scenario.ends_a_lease_unseen()
            && !(backend == Backend::Postgres && scenario == Scenario::ClientPause);
        // Faults the efficiency backends document as losing a grant (and
        // their best-effort fencing counters): a restart without
        // persistence, a failover to a replica that missed writes, a
        // Redlock majority restarted empty.
        let loses_data = matches!(
            (backend, scenario),
            (Backend::Redis, Scenario::ServerKill | Scenario::Failover)
                | (Backend::Redlock, Scenario::MajorityRestart)
        );
        let spare = Duration::from_secs(1);
        let regranted_within = match (backend, scenario) {
            (Backend::Redis | Backend::Redlock, Scenario::ClientPause | Scenario::ClientKill) => {
                Some(scenario.ttl() + spare)
            }
            (Backend::Etcd, Scenario::ClientPause | Scenario::ClientKill) => Some(SESSION + spare),
            (Backend::Zk, Scenario::ClientPause | Scenario::ClientKill) => {
                Some(SESSION + ZK_TICK + spare)
            }
            // A killed session's locks are freed by the server at once.
            (Backend::Postgres, Scenario::ClientKill) => Some(spare),
            _ => None,
        };
        Self {
            overlaps_allowed: unseen || loses_data,
            stale_accepted_allowed: loses_data,
            regranted_within_ms: regranted_within.map(|bound| bound.as_secs_f64() * 1e3),
        }
    }

    /// Whether a checked run keeps this promise.
    pub fn kept_by(self, report: &Report) -> bool {
        (self.overlaps_allowed || report.overlaps == 0)
            && (self.stale_accepted_allowed || report.stale_accepted == 0)
            && self.regranted_within_ms.is_none_or(|bound| {
                report
                    .regranted_after_ms
                    .is_some_and(|regranted| regranted <= bound)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correctness_backends_never_allow_a_stale_write_and_overlap_only_in_a_pause() {
        let mut overlapping = Vec::new();
        for backend in Backend::ALL.into_iter().filter(|b| b.is_correctness()) {
            for &scenario in backend.scenarios() {
                let promise = Promise::of(backend, scenario);
                assert!(!promise.stale_accepted_allowed, "{backend} {scenario}");
                if promise.overlaps_allowed {
                    overlapping.push((backend, scenario));
                }
            }
        }
        // A paused PostgreSQL session keeps its lock: no overlap there.
        assert_eq!(
            overlapping,
            [
                (Backend::Postgres, Scenario::TerminateBackend),
                (Backend::Etcd, Scenario::ClientPause),
                (Backend::Zk, Scenario::ClientPause),
                (Backend::Zk, Scenario::SessionExpiry),
            ]
        );
    }

    #[test]
    fn only_the_documented_faults_let_the_efficiency_backends_lose_a_grant() {
        let losing: Vec<(Backend, Scenario)> = [Backend::Redis, Backend::Redlock]
            .into_iter()
            .flat_map(|backend| backend.scenarios().iter().map(move |&s| (backend, s)))
            .filter(|&(backend, scenario)| Promise::of(backend, scenario).stale_accepted_allowed)
            .collect();
        assert_eq!(
            losing,
            [
                (Backend::Redis, Scenario::ServerKill),
                (Backend::Redis, Scenario::Failover),
                (Backend::Redlock, Scenario::MajorityRestart),
            ]
        );
        let split = Report {
            overlaps: 1,
            stale_accepted: 1,
            ..Report::default()
        };
        let promise = Promise::of(Backend::Redis, Scenario::FailoverMinReplicas);
        assert!(!promise.kept_by(&split), "min_replicas promises no overlap");
        assert!(Promise::of(Backend::Redis, Scenario::Failover).kept_by(&split));
    }

    #[test]
    fn a_stopped_holder_holds_the_lock_up_for_its_lease_and_no_longer() {
        let regranted = |ms: f64| Report {
            overlaps: 1,
            regranted_after_ms: Some(ms),
            ..Report::default()
        };
        let promise = Promise::of(Backend::Redlock, Scenario::ClientPause);
        assert!(promise.kept_by(&regranted(1_100.0)));
        assert!(
            !promise.kept_by(&regranted(2_990.0)),
            "the gate's 3 s, not the TTL's 1 s"
        );
        assert!(!promise.kept_by(&Report::default()), "never granted again");
        let postgres = Promise::of(Backend::Postgres, Scenario::ClientPause);
        assert!(
            postgres.kept_by(&Report::default()),
            "a paused session holds"
        );
    }
}
