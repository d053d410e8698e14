//! [`RedlockBackend`]: the distlock algorithm over N independent nodes.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use lockkit_core::{
    AcquireRequest, Background, Capabilities, Claim, Error, ErrorKind, Expiry, Fairness,
    FencingGuarantee, FencingToken, Grant, GrantHandle, Holder, LeaseModel, LockBackend, LockName,
    LockStatus, OwnerToken, Result, SafetyClass, Undo, Wait, WaitMode, REPEAT_FOR,
};
use lockkit_redis::keys::LockKeys;
use lockkit_redis::node::{lock_name, millis, Node, Operation};
use lockkit_redis::scripts::{self, OwnerCheck, Scripts};
use lockkit_redis::subscriber::{Listening, Subscriber};
use lockkit_redis::RedisBackend;
use tokio::sync::watch;

use crate::options::{RedlockConfig, RedlockOptions, DRIFT_FLOOR, TTL_PER_NODE_TIMEOUT};
use crate::quorum::{finish, Reply, Round};
use crate::url::node_urls;
use crate::BACKEND;

/// The longest a waiter waits without an announcement before it tries
/// again: a lost announcement (a node restarted, a subscriber
/// reconnecting) costs at most this.
const BACKSTOP: Duration = Duration::from_secs(1);

/// How long a waiter's mark on a lock lasts: releases announce themselves
/// while it does. A waiter renews it at every attempt, at least once per
/// [`BACKSTOP`].
const WATCHED: Duration = Duration::from_secs(3);

/// Locks held on a majority of independent Redis servers.
///
/// Cheap to share: clone the [`Locker`](lockkit_core::Locker) holding it.
/// Each node has one command connection and one subscriber connection.
#[derive(Clone)]
pub struct RedlockBackend {
    inner: Arc<Inner>,
}

struct Inner {
    members: Vec<Arc<Member>>,
    /// N/2 + 1.
    quorum: usize,
    /// The nodes, as errors name them (`h1:7001,h2:7002,…`).
    servers: String,
    options: RedlockOptions,
    capabilities: Capabilities,
    /// Where late grants are given back and tokens written back.
    background: Background,
    closed: AtomicBool,
    /// Names this client waited for lately, and when: a new acquire of one
    /// looks at its gate before it touches the lock's keys.
    waited: Mutex<HashMap<String, Instant>>,
}

/// One node: a single-Redis backend on it, whose fair queue is the gate
/// of the locks whose first node this is, and whose command and subscriber
/// connections the Redlock steps share.
struct Member {
    gate: RedisBackend,
}

impl Member {
    fn node(&self) -> &Node {
        self.gate.node()
    }

    fn subscriber(&self) -> Option<Arc<Subscriber>> {
        self.gate.subscriber()
    }
}

impl fmt::Debug for RedlockBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedlockBackend")
            .field("servers", &self.inner.servers)
            .field("quorum", &self.inner.quorum)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// One node's answer to an acquire: `SET NX PX`, `INCRBY` of the fence and
/// `PTTL`, in one round trip.
#[derive(Debug)]
enum Vote {
    /// Set; the node's fence after its increment.
    Granted(u64),
    /// Waiters are in line for the lock at its gate (this node may have
    /// granted too): a newcomer gives its grants back and joins the line.
    Queued,
    /// Held by another owner, for this long (ms) if it has a TTL; the
    /// node's fence after its increment.
    Refused { fence: u64, pttl: Option<u64> },
    /// No answer, or an error.
    Failed(Error),
}

/// How many attempts in a row may find too few nodes answering before an
/// acquire fails `Unavailable`: a node that is down fails at once, but a
/// reply late under load should not fail a whole acquire.
const UNAVAILABLE_TRIES: u32 = 3;

/// How long the waiter at the front holds the gate unless it renews it
/// (it does at least once per [`BACKSTOP`]): a waiter that dies holds the
/// line up for at most this long.
const GATE_TTL: Duration = Duration::from_secs(3);

/// After this many `retry_jitter`s of waiting, a waiter woken by a release
/// tries again at once instead of after a random pause.
const PATIENT_JITTERS: u32 = 8;

/// What a grant's keys hold on the nodes: the lease's owner token and the
/// number of the attempt that won, `<owner hex>.<attempt>`. Each attempt
/// sets a value of its own, so giving back an earlier attempt's late grant
/// (owner-checked) never removes a later attempt's. Carried in the grant's
/// handle to extend and release.
#[derive(Debug, Clone)]
struct Holding(Arc<str>);

impl Holding {
    /// The value of `claim`'s grant. A claim without this backend's handle,
    /// or with another owner's, gets a value no attempt ever sets (attempts
    /// count from 1), so it holds nothing.
    fn of(claim: &Claim) -> Arc<str> {
        let owner = claim.owner.to_hex();
        match claim.handle::<Holding>() {
            Some(Holding(value))
                if value
                    .strip_prefix(owner.as_str())
                    .is_some_and(|attempt| attempt.starts_with('.')) =>
            {
                value.clone()
            }
            _ => Arc::from(format!("{owner}.0")),
        }
    }
}

/// The front of a lock's line: the gate held by one waiter, given up
/// (in the background) when dropped.
struct GateHold {
    backend: RedlockBackend,
    member: Arc<Member>,
    /// `None` once given up.
    claim: Option<Claim>,
    /// When the gate's TTL last restarted.
    renewed: Instant,
}

impl GateHold {
    /// Restarts the gate's TTL if a third of it has passed.
    async fn renew(&mut self) {
        let Some(claim) = &self.claim else { return };
        if self.renewed.elapsed() < GATE_TTL / 3 {
            return;
        }
        let sent = Instant::now();
        match self.member.gate.extend(claim, GATE_TTL).await {
            Ok(_) => self.renewed = sent,
            // Lost: the next in line may try beside this waiter, which is
            // only less orderly.
            Err(error) => tracing::debug!(%error, "renewing the lock's gate failed"),
        }
    }
}

impl GateHold {
    /// Hands the front of the line to the next waiter, before the grant
    /// that ends this wait is reported: a holder stopped right after its
    /// grant (a process pause, a kill) must not keep the line for the
    /// gate's TTL ([`GATE_TTL`]) beyond its own lease. Bounded by the
    /// response timeout; on failure the gate expires by itself.
    async fn hand_on(mut self) {
        let Some(claim) = self.claim.take() else {
            return;
        };
        let timeout = self.backend.inner.options.response_timeout;
        match tokio::time::timeout(timeout, self.member.gate.release(&claim)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "giving up the lock's gate failed; it expires");
            }
            Err(_) => tracing::debug!("giving up the lock's gate timed out; it expires"),
        }
    }
}

impl Drop for GateHold {
    fn drop(&mut self) {
        let Some(claim) = self.claim.take() else {
            return;
        };
        let member = self.member.clone();
        self.backend
            .in_background("the lock's gate expires at its TTL", async move {
                if let Err(error) = member.gate.release(&claim).await {
                    tracing::debug!(%error, "giving up the lock's gate failed; it expires");
                }
            });
    }
}

/// How an acquire attempt ended.
enum Attempt {
    Granted(Grant),
    /// A majority refused: another owner holds the lock; retry no later
    /// than this (when enough of its keys expire).
    Held(Duration),
    /// Neither a majority for this owner nor against it (votes split
    /// between waiters, or a grant too late to use): retry soon.
    Split,
    /// Too many nodes failed for any majority.
    Unavailable(Error),
    /// Waiters are in line at the lock's gate: everything granted was given
    /// back, and this acquire joins the line.
    Queued,
}

impl RedlockBackend {
    /// Connects to `url` (`redlock://h1:7001,h2:7002,h3:7003`) with the default options.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, RedlockOptions::new()).await
    }

    /// Connects with a configuration's namespace and `[redlock]` section,
    /// as the `lockkit` facade does.
    pub async fn from_config(url: &str, namespace: &str, config: &RedlockConfig) -> Result<Self> {
        Self::connect_with(url, RedlockOptions::from_config(namespace, config)).await
    }

    /// Connects to every member of `url`
    /// (`redlock://[user:password@]host[:port],…`) and checks them; see
    /// [`connect_nodes`](Self::connect_nodes).
    pub async fn connect_with(url: &str, options: RedlockOptions) -> Result<Self> {
        options.validate()?;
        Self::connect_nodes(&node_urls(url)?, options).await
    }

    /// Connects to each node by its own Redis URL (any form
    /// `lockkit-redis` takes: `redis://`, `rediss://` for TLS, a Unix
    /// socket) and refuses a set of nodes that would not be a Redlock:
    ///
    /// - fewer than 3 nodes;
    /// - one server twice, by address or by its `run_id` (two names for one
    ///   server would fake a majority);
    /// - a replica (of another node or of anything: a node must be a
    ///   primary that keeps its own keys);
    /// - a node that fails `lockkit-redis`' checks (a cluster node, an
    ///   evicting `maxmemory-policy`) or whose user may not run the
    ///   commands of every step.
    ///
    /// Every node must answer at connect, so that each is checked; once
    /// connected, up to N − (N/2 + 1) may fail at any time.
    ///
    /// Fails with [`Config`](ErrorKind::Config) naming the node and what is
    /// wrong, or [`Unavailable`](ErrorKind::Unavailable) if a node cannot
    /// be reached.
    pub async fn connect_nodes(urls: &[impl AsRef<str>], options: RedlockOptions) -> Result<Self> {
        options.validate()?;
        let config = |why: String| Error::new(ErrorKind::Config, BACKEND, why);
        if urls.len() < 3 {
            return Err(config(format!(
                "url: a Redlock needs at least 3 independent nodes (5 tolerate 2 failures), \
                 got {}",
                urls.len()
            )));
        }
        let connects = urls
            .iter()
            .map(|url| RedisBackend::connect(url.as_ref(), options.gate()));
        let gates = futures_util::future::join_all(connects).await;
        let mut members = Vec::with_capacity(gates.len());
        for gate in gates {
            let gate = gate?;
            if let Some(same) = members
                .iter()
                .find(|member: &&Arc<Member>| member.gate.server() == gate.server())
            {
                return Err(config(format!(
                    "url: node {} is named twice: two names for one server would fake a \
                     majority",
                    same.gate.server()
                )));
            }
            members.push(Arc::new(Member { gate }));
        }
        let mut run_ids: Vec<(String, &str)> = Vec::with_capacity(members.len());
        for member in &members {
            let Some(run_id) = member.node().run_id().await? else {
                tracing::warn!(
                    server = member.node().server(),
                    "this user may not run INFO: whether two nodes are one server is unchecked"
                );
                continue;
            };
            if let Some((_, other)) = run_ids.iter().find(|(id, _)| *id == run_id) {
                return Err(config(format!(
                    "url: nodes {other} and {} are one server (run_id {run_id}): two names for \
                     one server would fake a majority",
                    member.node().server()
                )));
            }
            run_ids.push((run_id, member.node().server()));
        }
        let quorum = members.len() / 2 + 1;
        let servers = members
            .iter()
            .map(|member| member.node().server())
            .collect::<Vec<_>>()
            .join(",");
        let mut capabilities = Capabilities::new(
            SafetyClass::Efficiency,
            FencingGuarantee::BestEffort,
            LeaseModel::Ttl,
            WaitMode::Notify,
            Fairness::Unordered,
        );
        capabilities.drift = DRIFT_FLOOR;
        // In millionths, rounded up: the allowance is never less than asked.
        capabilities.drift_ppm = (options.drift_factor * 1e6).ceil() as u32;
        capabilities.min_ttl = options.node_timeout * TTL_PER_NODE_TIMEOUT;
        capabilities.status = true;
        let backend = Self {
            inner: Arc::new(Inner {
                members,
                quorum,
                servers,
                options,
                capabilities,
                background: Background::new(),
                closed: AtomicBool::new(false),
                waited: Mutex::new(HashMap::new()),
            }),
        };
        for member in &backend.inner.members {
            backend.check_rights(member).await?;
        }
        Ok(backend)
    }

    /// Runs every step once on a probe lock of `member`'s, whose keys are
    /// deleted after, and subscribes once: a user whose ACL lacks a command,
    /// a key pattern or a channel is refused now, not at the first contended
    /// acquire.
    async fn check_rights(&self, member: &Member) -> Result<()> {
        let node = member.node();
        let probe = format!("lockkit-connect-check:{}", OwnerToken::generate()?.to_hex());
        let keys = LockKeys::new(&self.inner.options.namespace, &probe);
        let owner = OwnerToken::generate()?.to_hex();
        let what = Operation("check the lock commands on", &keys);
        let outcome = async {
            for ask in [Ask::Gate(self.gate_key(&keys)), Ask::Watch] {
                if let Vote::Failed(error) = vote(node, &keys, &owner, 10_000, &ask).await {
                    return Err(error);
                }
            }
            node.raise_fence(&keys, 2).await?;
            node.run::<i64>(&Scripts::get().extend(&keys, &owner, 10_000), &what)
                .await?;
            node.release_announced(&keys, &owner, &what).await?;
            if let Some(subscriber) = member.subscriber() {
                let listening = subscriber
                    .listen(&keys.released_channel(), Arc::new(|_: &[u8]| {}))
                    .await?;
                drop(listening);
            }
            Ok(())
        }
        .await;
        let cleaned = node.delete(&keys).await;
        outcome.and(cleaned).map_err(|error| {
            if error.kind() == ErrorKind::Config {
                Error::new(
                    ErrorKind::Config,
                    BACKEND,
                    format!(
                        "{}; lockkit-redlock needs, on every node, keys `{ns}:*` and channels \
                         `{ns}:*` with +@connection +@scripting +info +get +set +del +exists \
                         +incrby +pexpire +pttl +publish +subscribe +unsubscribe",
                        error.message(),
                        ns = self.inner.options.namespace
                    ),
                )
            } else {
                error
            }
        })
    }

    /// The nodes' addresses, as errors name them.
    pub fn servers(&self) -> &str {
        &self.inner.servers
    }

    /// How many nodes make a majority: N/2 + 1.
    pub fn quorum(&self) -> usize {
        self.inner.quorum
    }

    /// The options this backend was connected with.
    pub fn options(&self) -> &RedlockOptions {
        &self.inner.options
    }

    fn nodes(&self) -> usize {
        self.inner.members.len()
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::closed(BACKEND).at(&self.inner.servers));
        }
        Ok(())
    }

    /// One request per node but those in `asked`, each `request(node)`,
    /// tagged with its index.
    fn ask<T, F, Fut>(&self, asked: &[usize], request: F) -> Vec<Reply<T>>
    where
        F: Fn(Arc<Member>) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        self.inner
            .members
            .iter()
            .enumerate()
            .filter(|(index, _)| !asked.contains(index))
            .map(|(index, member)| {
                let reply = request(member.clone());
                Box::pin(async move { (index, reply.await) }) as Reply<T>
            })
            .collect()
    }

    /// The key of the lock's gate, which exists while waiters are in line:
    /// the lock key of the gate's namespace, `<namespace>:gate:{<name>}`.
    fn gate_key(&self, keys: &LockKeys) -> Arc<str> {
        let namespace = &self.inner.options.namespace;
        let braced = &keys.lock()[namespace.len() + 1..];
        Arc::from(format!("{}:{braced}", self.inner.options.gate_namespace()))
    }

    /// Takes this waiter's place in the line of lock `name` at its gate —
    /// the fair queue of the single-Redis backend on the lock's first node —
    /// and waits for its turn, within the request's wait. `None` if the
    /// gate's node fails: the waiter then tries without a line.
    async fn enter_gate(
        &self,
        keys: &LockKeys,
        request: &AcquireRequest,
    ) -> Result<Option<GateHold>> {
        let member = self.inner.members[self.first_node(keys)].clone();
        let owner = OwnerToken::generate()?;
        let asked = AcquireRequest {
            name: request.name.clone(),
            owner,
            ttl: GATE_TTL,
            wait: request.wait,
        };
        match member.gate.acquire(asked).await {
            Ok(grant) => Ok(Some(GateHold {
                backend: self.clone(),
                member,
                claim: Some(Claim {
                    name: request.name.clone(),
                    owner,
                    token: grant.token,
                    handle: grant.handle,
                }),
                renewed: Instant::now(),
            })),
            Err(error) if error.kind() == ErrorKind::Timeout => Err(Error::timeout(
                BACKEND,
                "acquire",
                lock_name(keys),
                "waiters ahead of it, or another owner, kept it",
            )
            .at(&self.inner.servers)),
            Err(error) => {
                tracing::debug!(%error, "the lock's gate failed; waiting without a line");
                Ok(None)
            }
        }
    }

    /// Whether this client waited for lock `name` within the last [`BACKSTOP`].
    fn waited_lately(&self, name: &LockName) -> bool {
        let waited = self
            .inner
            .waited
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        waited
            .get(name.as_str())
            .is_some_and(|at| at.elapsed() < BACKSTOP)
    }

    /// Remembers that this client waited for lock `name`, forgetting names
    /// not waited for within the last [`BACKSTOP`].
    fn note_waited(&self, name: &LockName) {
        let mut waited = self
            .inner
            .waited
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        waited.retain(|_, at| at.elapsed() < BACKSTOP);
        waited.insert(name.as_str().to_owned(), Instant::now());
    }

    /// Whether waiters are in line for lock `keys` (its gate is held), by
    /// one `EXISTS` on the gate node; `false` if the node does not answer
    /// within the node timeout.
    async fn gate_in_use(&self, keys: &LockKeys) -> bool {
        let node = self.inner.members[self.first_node(keys)].node();
        let gate = self.gate_key(keys);
        let asked = node.exists(&gate);
        matches!(
            tokio::time::timeout(self.inner.options.node_timeout, asked).await,
            Ok(Ok(true))
        )
    }

    /// The node a waiter's retry asks first for lock `keys`: one per name,
    /// spread over the nodes; its single-Redis backend is the lock's gate.
    fn first_node(&self, keys: &LockKeys) -> usize {
        // FNV-1a: any fixed spread will do, the same in every client.
        let hash = keys
            .lock()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        (hash % self.nodes() as u64) as usize
    }

    /// One acquire attempt: every node at once, resolved on a majority.
    ///
    /// A waiter's retry (`probe`) asks the lock's first node alone first,
    /// and the others only once it granted: of waiters woken together, the
    /// one that wins the first node goes on to the others, and the rest
    /// learn that the lock is taken again from one command rather than
    /// five (and split no votes among them).
    async fn attempt(
        &self,
        keys: &Arc<LockKeys>,
        owner: &Arc<str>,
        ttl: Duration,
        kind: Kind,
    ) -> Attempt {
        let (nodes, quorum) = (self.nodes(), self.inner.quorum);
        let ttl_ms = millis(ttl);
        let sent = Instant::now();
        let mut known = Round::unanswered(nodes);
        let mut asked = Vec::new();
        let first = self.first_node(keys);
        let ask = match kind {
            Kind::Newcomer => Ask::Grant,
            Kind::Waiter | Kind::Woken | Kind::Gated => Ask::Watch,
        };
        if kind == Kind::Woken {
            let node = self.inner.members[first].node();
            let first_vote = vote(node, keys, owner, ttl_ms, &ask);
            match tokio::time::timeout(self.inner.options.node_timeout, first_vote).await {
                Ok(Vote::Refused { pttl, .. }) => return Attempt::Held(backstop(&[pttl], 1)),
                Ok(answer) => {
                    known[first] = Some(answer);
                    asked.push(first);
                }
                Err(_) => {
                    // Its vote may still land: given back behind it.
                    let (backend, keys, owner) = (self.clone(), keys.clone(), owner.clone());
                    self.in_background("a late grant expires at its TTL", async move {
                        backend.give_back(&keys, &owner, &[first]).await;
                    });
                    return Attempt::Split;
                }
            }
        }
        // A newcomer asks the gate node whether waiters are in line.
        let gate = (kind == Kind::Newcomer).then(|| self.gate_key(keys));
        let members = &self.inner.members;
        let requests = self.ask(&asked, |member| {
            let (keys, owner) = (keys.clone(), owner.clone());
            let ask = match &gate {
                Some(gate) if Arc::ptr_eq(&member, &members[first]) => Ask::Gate(gate.clone()),
                _ => ask.clone(),
            };
            async move { vote(member.node(), &keys, &owner, ttl_ms, &ask).await }
        });
        let valid_until = sent + ttl.saturating_sub(self.inner.options.drift(ttl));
        let round = Round::gather(
            known,
            requests,
            (sent, self.inner.options.node_timeout, valid_until),
            |answers| {
                // Known: this owner's majority (for a newcomer, once the
                // gate said whether waiters are in line), another's, too
                // many nodes failed for any — or every node answered.
                let gate_heard = gate.is_none() || answers[first].is_some();
                count(answers, |vote| {
                    matches!(vote, Vote::Granted(_) | Vote::Queued)
                }) >= quorum
                    && gate_heard
                    || count(answers, |vote| matches!(vote, Vote::Refused { .. })) >= quorum
                    || count(answers, |vote| matches!(vote, Vote::Failed(_))) > nodes - quorum
                    || answers.iter().all(Option::is_some)
            },
        )
        .await;
        let granted = round.count(|vote| matches!(vote, Vote::Granted(_)));
        let queued = round.count(|vote| matches!(vote, Vote::Queued)) > 0;
        if granted >= quorum && !queued && Instant::now() < valid_until {
            let token = round
                .answers
                .iter()
                .flatten()
                .filter_map(|vote| match vote {
                    Vote::Granted(fence) => Some(*fence),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            return match self
                .write_back(keys, owner, round, token, valid_until)
                .await
            {
                Ok(grant) => Attempt::Granted(grant),
                Err(()) => Attempt::Split,
            };
        }
        let failed = round.count(|vote| matches!(vote, Vote::Failed(_))) + round.pending.len();
        let refused: Vec<Option<u64>> = round
            .answers
            .iter()
            .flatten()
            .filter_map(|vote| match vote {
                Vote::Refused { pttl, .. } => Some(*pttl),
                _ => None,
            })
            .collect();
        let mut round = round;
        let unavailable = (failed > nodes - quorum && refused.len() < quorum)
            .then(|| self.unavailable("acquire", keys, &round));
        if unavailable.is_some() && !round.pending.is_empty() {
            // The acquire may try again: the late replies get one more
            // node timeout, so the next attempt does not meet this one's
            // late grants still being given back.
            let more = Instant::now() + self.inner.options.node_timeout;
            while let Ok(Some((index, vote))) =
                tokio::time::timeout_at(more.into(), round.pending.next()).await
            {
                round.answers[index] = Some(vote);
            }
        }
        // Nothing is kept: give back every grant, now where it answered
        // (this owner's next attempt must not meet its own key), in the
        // background where the answer is still to come.
        let answered: Vec<usize> = (0..nodes)
            .filter(|&index| {
                matches!(
                    round.answers[index],
                    Some(Vote::Granted(_) | Vote::Queued | Vote::Failed(_))
                )
            })
            .collect();
        self.give_back_pending(keys, owner, round.pending);
        self.give_back(keys, owner, &answered).await;
        if queued {
            return Attempt::Queued;
        }
        if let Some(error) = unavailable {
            return Attempt::Unavailable(error);
        }
        if refused.len() < quorum {
            return Attempt::Split;
        }
        let must_free = quorum.saturating_sub(nodes - refused.len()).max(1);
        Attempt::Held(backstop(&refused, must_free))
    }

    /// Makes `token` safe to report: a majority of the nodes granted must
    /// hold a fence at least this high. Nodes that answered the token
    /// itself already do; the others granted are raised (one more round,
    /// only when fewer than a majority returned it). Everything else —
    /// nodes that refused with a lower fence, and the replies still to come
    /// — is settled in the background.
    async fn write_back(
        &self,
        keys: &Arc<LockKeys>,
        owner: &Arc<str>,
        round: Round<Vote>,
        token: u64,
        valid_until: Instant,
    ) -> std::result::Result<Grant, ()> {
        let (nodes, quorum) = (self.nodes(), self.inner.quorum);
        let Round {
            mut answers,
            mut pending,
        } = round;
        // Replies already in: settled here rather than in the background.
        while let Some(Some((index, vote))) = pending.next().now_or_never() {
            answers[index] = Some(vote);
        }
        let at_token = answers
            .iter()
            .filter(|vote| matches!(vote, Some(Vote::Granted(fence)) if *fence >= token))
            .count();
        let below = |wanted: fn(&Vote) -> bool| -> Vec<usize> {
            (0..nodes)
                .filter(|&index| match &answers[index] {
                    Some(vote @ (Vote::Granted(fence) | Vote::Refused { fence, .. })) => {
                        *fence < token && wanted(vote)
                    }
                    _ => false,
                })
                .collect()
        };
        let granted_below = below(|vote| matches!(vote, Vote::Granted(_)));
        let refused_below = below(|vote| matches!(vote, Vote::Refused { .. }));
        self.settle_in_background(keys, owner, token, pending, refused_below);
        if at_token < quorum {
            let members = &self.inner.members;
            let requests = granted_below.iter().map(|&index| {
                let (member, keys) = (members[index].clone(), keys.clone());
                Box::pin(async move { (index, member.node().raise_fence(&keys, token).await) })
                    as Reply<Result<u64>>
            });
            let needed = quorum - at_token;
            let timing = (Instant::now(), self.inner.options.node_timeout, valid_until);
            let raised = Round::gather(Round::unanswered(nodes), requests, timing, |answers| {
                count(answers, |fence| fence.as_ref().is_ok_and(|f| *f >= token)) >= needed
            })
            .await;
            let done = raised.count(|fence| fence.as_ref().is_ok_and(|f| *f >= token));
            if done < needed || Instant::now() >= valid_until {
                let granted: Vec<usize> = (0..nodes)
                    .filter(|&index| matches!(answers[index], Some(Vote::Granted(_))))
                    .collect();
                self.give_back(keys, owner, &granted).await;
                return Err(());
            }
        }
        let token = FencingToken::new(token).ok_or(())?;
        Ok(Grant::new(token, Some(valid_until)))
    }

    /// The background part of a grant: every node known to be below the
    /// token is raised to it, so a later majority meets it even where it
    /// does not meet a node that granted this one; so is each straggler
    /// that answers below it. A straggler's grant that comes within the
    /// node timeout is kept — the lease holds that node too, and its
    /// release and extensions reach every node — and a later one, which
    /// the acquire counted as failed, is given back.
    fn settle_in_background(
        &self,
        keys: &Arc<LockKeys>,
        owner: &Arc<str>,
        token: u64,
        pending: futures_util::stream::FuturesUnordered<Reply<Vote>>,
        below: Vec<usize>,
    ) {
        if pending.is_empty() && below.is_empty() {
            return;
        }
        let (backend, keys, owner) = (self.clone(), keys.clone(), owner.clone());
        let late_after = Instant::now() + self.inner.options.node_timeout;
        self.in_background("late grants expire at their TTL", async move {
            let raise = |index: usize| {
                let member = backend.inner.members[index].clone();
                let keys = keys.clone();
                async move {
                    if let Err(error) = member.node().raise_fence(&keys, token).await {
                        tracing::debug!(%error, "writing a fencing token back failed");
                    }
                }
            };
            futures_util::future::join_all(below.into_iter().map(raise)).await;
            finish(pending, |index, vote| {
                let (backend, keys, owner) = (&backend, &keys, &owner);
                async move {
                    let late = Instant::now() >= late_after;
                    let below = match vote {
                        Vote::Refused { fence, .. } => fence < token,
                        Vote::Granted(fence) if !late => fence < token,
                        Vote::Granted(fence) => {
                            backend.give_back(keys, owner, &[index]).await;
                            fence < token
                        }
                        Vote::Queued | Vote::Failed(_) => {
                            backend.give_back(keys, owner, &[index]).await;
                            true
                        }
                    };
                    if below {
                        raise(index).await;
                    }
                }
            })
            .await;
        });
    }

    /// Runs `work` on the backend's background; without a runtime, logs
    /// what lapses instead.
    fn in_background(
        &self,
        lapses: &'static str,
        work: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        if !self.inner.background.spawn(work) {
            tracing::debug!("no runtime reachable for background work: {lapses}");
        }
    }

    /// Releases `owner`'s key on the nodes `indexes` (owner-checked, so
    /// harmless where it holds none), announcing it to waiters.
    async fn give_back(&self, keys: &LockKeys, owner: &str, indexes: &[usize]) {
        let what = Operation("give back", keys);
        let releases = indexes.iter().map(|&index| {
            self.inner.members[index]
                .node()
                .release_announced(keys, owner, &what)
        });
        for outcome in futures_util::future::join_all(releases).await {
            if let Err(error) = outcome {
                tracing::debug!(%error, "giving back a grant failed; it expires at its TTL");
            }
        }
    }

    /// Gives back, in the background, whatever the replies still to come granted.
    fn give_back_pending(
        &self,
        keys: &Arc<LockKeys>,
        owner: &Arc<str>,
        pending: futures_util::stream::FuturesUnordered<Reply<Vote>>,
    ) {
        if pending.is_empty() {
            return;
        }
        let (backend, keys, owner) = (self.clone(), keys.clone(), owner.clone());
        self.in_background("late grants expire at their TTL", async move {
            finish(pending, |index, vote| {
                let (backend, keys, owner) = (&backend, &keys, &owner);
                async move {
                    if !matches!(vote, Vote::Refused { .. }) {
                        backend.give_back(keys, owner, &[index]).await;
                    }
                }
            })
            .await;
        });
    }

    /// `Unavailable`, naming every node that failed or did not answer.
    fn unavailable<T: NodeAnswer + Send + 'static>(
        &self,
        action: &str,
        keys: &LockKeys,
        round: &Round<T>,
    ) -> Error {
        // Nodes still to answer failed too, unless the errors alone decided
        // (the answers of the others were then not awaited).
        let errors = round.count(|answer| answer.failure().is_some());
        let name_pending = errors <= self.nodes() - self.inner.quorum;
        let failures: Vec<String> = round
            .answers
            .iter()
            .enumerate()
            .filter_map(|(index, answer)| {
                let server = self.inner.members[index].node().server();
                match answer {
                    None if name_pending => Some(format!(
                        "{server}: no answer within {:?}",
                        self.inner.options.node_timeout
                    )),
                    None => None,
                    Some(answer) => answer.failure().map(|error| error.to_string()),
                }
            })
            .collect();
        Error::new(
            ErrorKind::Unavailable,
            BACKEND,
            format!(
                "{action} `{}`: {} of {} nodes failed, and a majority needs {}: {}",
                lock_name(keys),
                failures.len(),
                self.nodes(),
                self.inner.quorum,
                failures.join("; ")
            ),
        )
        .at(&self.inner.servers)
    }

    /// Starts listening for releases of `keys`' lock on every node that
    /// answers within the node timeout; returns the listeners and the
    /// receiver their announcements reach.
    async fn listen(&self, keys: &LockKeys) -> (Vec<Listening>, watch::Receiver<u64>) {
        let (announce, announced) = watch::channel(0u64);
        let announce = Arc::new(announce);
        let channel = keys.released_channel();
        let listens = self.inner.members.iter().filter_map(|member| {
            let subscriber = member.subscriber()?;
            let announce = announce.clone();
            let channel = channel.clone();
            Some(async move {
                let route = Arc::new(move |_: &[u8]| announce.send_modify(|count| *count += 1));
                subscriber.listen(&channel, route).await
            })
        });
        let listening = tokio::time::timeout(
            self.inner.options.node_timeout,
            futures_util::future::join_all(listens),
        )
        .await
        .map(|outcomes| outcomes.into_iter().filter_map(Result::ok).collect())
        .unwrap_or_default();
        (listening, announced)
    }

    /// A random pause in `[0, bound]`: waiters woken together spread out.
    fn jitter(bound: Duration) -> Duration {
        bound.mul_f64(fastrand::f64())
    }

    /// The keys of `claim`'s lock and the value its grant set on the nodes.
    fn claimed(&self, claim: &Claim) -> (Arc<LockKeys>, Arc<str>) {
        let keys = LockKeys::new(&self.inner.options.namespace, claim.name.as_str());
        (Arc::new(keys), Holding::of(claim))
    }

    /// `NotHeld` for a claim only `held_on` nodes still held: it expired.
    fn expired(&self, action: &str, claim: &Claim, held_on: usize) -> Error {
        Error::not_held(
            BACKEND,
            action,
            claim.name.as_str(),
            format!(
                "it expired: {held_on} of {} nodes still had it, and a majority needs {}",
                self.nodes(),
                self.inner.quorum
            ),
        )
        .at(&self.inner.servers)
    }

    fn contended(&self, keys: &LockKeys) -> Error {
        Error::contended(
            BACKEND,
            "acquire",
            lock_name(keys),
            "another owner holds it on a majority of nodes, or the votes split",
        )
        .at(&self.inner.servers)
    }

    /// Acquires, waiting as the request says. Each attempt's value is
    /// left in `current` before it is sent, for the acquire's undo step.
    ///
    /// A newcomer that finds the lock held, or waiters in line, takes its
    /// place in the line at the lock's gate and waits there without trying;
    /// the waiter at the front tries whenever a release is announced (and
    /// when the holder's keys run out), and gives up the gate once it holds
    /// the lock, which hands the front to the next in line. Where the
    /// gate's node fails, waiters try without a line: when woken, after a
    /// random pause, asking the lock's first node first.
    async fn acquire_waiting(
        &self,
        keys: &Arc<LockKeys>,
        current: &Mutex<Arc<str>>,
        request: &AcquireRequest,
    ) -> Result<Grant> {
        let owner = request.owner.to_hex();
        let started = Instant::now();
        let deadline = match request.wait {
            Wait::Until(deadline) => Some(deadline),
            Wait::No | Wait::Forever => None,
        };
        let mut waiting: Option<(Vec<Listening>, watch::Receiver<u64>)> = None;
        let mut gate: Option<GateHold> = None;
        let mut contended = false;
        let mut unavailable = 0;
        let mut attempt = 0u64;
        // Whether an announcement woke this waiter.
        let mut woken = false;
        // A client that waited for this name lately (one that loops on a
        // busy lock) looks at the gate first: when waiters are in line it
        // joins them without setting keys that the one at the front would
        // meet and have to wait out.
        if request.wait != Wait::No
            && self.waited_lately(&request.name)
            && self.gate_in_use(keys).await
        {
            contended = true;
            gate = self.enter_gate(keys, request).await?;
            waiting = Some(self.listen(keys).await);
        }
        loop {
            attempt += 1;
            if let Some((_, announced)) = &mut waiting {
                announced.borrow_and_update();
            }
            let value: Arc<str> = Arc::from(format!("{owner}.{attempt}"));
            *current.lock().unwrap_or_else(PoisonError::into_inner) = value.clone();
            let kind = match (&waiting, &gate, std::mem::take(&mut woken)) {
                (None, None, _) => Kind::Newcomer,
                (_, Some(_), _) => Kind::Gated,
                (Some(_), None, false) => Kind::Waiter,
                (Some(_), None, true) => Kind::Woken,
            };
            let pause = match self.attempt(keys, &value, request.ttl, kind).await {
                Attempt::Granted(grant) => {
                    // The gate, if held, goes to the next in line first.
                    if let Some(gate) = gate {
                        gate.hand_on().await;
                    }
                    if contended {
                        self.note_waited(&request.name);
                    }
                    return Ok(Grant {
                        contended,
                        handle: Some(GrantHandle::new(Holding(value))),
                        ..grant
                    });
                }
                Attempt::Unavailable(error) => {
                    unavailable += 1;
                    let wake = Instant::now() + Self::jitter(self.inner.options.node_timeout);
                    if unavailable >= UNAVAILABLE_TRIES
                        || deadline.is_some_and(|deadline| wake >= deadline)
                    {
                        return Err(error);
                    }
                    tracing::debug!(%error, "too few nodes answered; trying again");
                    tokio::time::sleep_until(wake.into()).await;
                    continue;
                }
                Attempt::Held(backstop) => Some(backstop),
                Attempt::Queued => Some(BACKSTOP),
                // At the front of the line, a split is a newcomer's grants
                // crossing this waiter's: the newcomer gives them back and
                // announces it. Elsewhere waiters back off at random.
                Attempt::Split if gate.is_some() => Some(self.inner.options.node_timeout),
                Attempt::Split => None,
            };
            unavailable = 0;
            contended = true;
            if request.wait == Wait::No {
                return Err(self.contended(keys));
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Err(Error::timeout(
                    BACKEND,
                    "acquire",
                    lock_name(keys),
                    "another owner kept it on a majority of nodes",
                )
                .at(&self.inner.servers));
            }
            let Some((listening, announced)) = &mut waiting else {
                // Into the line first (waiting there without trying), then
                // listen, then try again at once: a release between the
                // attempt and the subscription is not missed.
                gate = self.enter_gate(keys, request).await?;
                waiting = Some(self.listen(keys).await);
                continue;
            };
            if let Some(gate) = &mut gate {
                gate.renew().await;
            }
            let jitter = self.inner.options.retry_jitter;
            // Alone at the front, or a waiter that has waited a while: at
            // once when woken. Newer waiters without a line draw a pause.
            let at_once = gate.is_some() || started.elapsed() >= jitter * PATIENT_JITTERS;
            let (wake, jitter) = match pause {
                // The holder's keys expire, unless an announcement comes first.
                Some(backstop) if at_once => (Instant::now() + backstop, Duration::ZERO),
                Some(backstop) => (Instant::now() + backstop, Self::jitter(jitter)),
                // Votes split: back off at random, announcement or not.
                None => (Instant::now() + Self::jitter(jitter * 4), Duration::ZERO),
            };
            let wake = deadline.map_or(wake, |deadline| wake.min(deadline));
            tokio::select! {
                changed = announced.changed(), if pause.is_some() => {
                    woken = changed.is_ok();
                    if woken && !jitter.is_zero() {
                        tokio::time::sleep(jitter).await;
                    }
                }
                () = tokio::time::sleep_until(wake.into()) => {
                    // No announcement while the holder's keys ran out, or
                    // a subscriber lost its connection: a ping finds out.
                    if pause.is_some() {
                        for listening in listening.iter() {
                            listening.ping_in_background();
                        }
                    }
                }
            }
        }
    }
}

/// What the round counts of an answer.
trait NodeAnswer {
    /// The error of a node that failed.
    fn failure(&self) -> Option<&Error>;
}

impl NodeAnswer for Vote {
    fn failure(&self) -> Option<&Error> {
        match self {
            Vote::Failed(error) => Some(error),
            _ => None,
        }
    }
}

impl<T> NodeAnswer for Result<T> {
    fn failure(&self) -> Option<&Error> {
        self.as_ref().err()
    }
}

/// When to try again at the latest after refusals with these remaining
/// TTLs (ms), of which `must_free` must run out for a majority: the
/// `must_free`-th shortest, and never later than [`BACKSTOP`].
fn backstop(refusals: &[Option<u64>], must_free: usize) -> Duration {
    let mut expiries: Vec<u64> = refusals
        .iter()
        .map(|pttl| pttl.unwrap_or(u64::MAX))
        .collect();
    expiries.sort_unstable();
    expiries
        .get(must_free.max(1) - 1)
        .map_or(BACKSTOP, |ms| Duration::from_millis(ms.saturating_add(1)))
        .min(BACKSTOP)
}

/// How many answers satisfy `test`.
fn count<T>(answers: &[Option<T>], test: impl Fn(&T) -> bool) -> usize {
    answers
        .iter()
        .flatten()
        .filter(|answer| test(answer))
        .count()
}

/// Who makes an attempt, which decides what it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An acquire's first attempt: it gives way if waiters are in line.
    Newcomer,
    /// A waiter that has not yet heard a release.
    Waiter,
    /// A waiter woken by a release's announcement: it asks the lock's first
    /// node alone first.
    Woken,
    /// The waiter at the front of the line: the only one trying.
    Gated,
}

/// What a vote asks of a node beside the grant.
#[derive(Debug, Clone)]
enum Ask {
    /// Nothing more.
    Grant,
    /// A waiter's vote: the lock's `PTTL` (when to try again at the
    /// latest), and a mark that the lock is watched for [`WATCHED`], so
    /// releases announce themselves.
    Watch,
    /// A newcomer's vote at the lock's gate node: whether waiters are in
    /// line (this key of the gate exists).
    Gate(Arc<str>),
}

/// One node's vote: [`scripts::fast_acquire`]'s `SET NX PX` and `INCRBY`,
/// and what `ask` adds, in one round trip.
async fn vote(node: &Node, keys: &LockKeys, owner: &str, ttl_ms: u64, ask: &Ask) -> Vote {
    let mut pipeline = scripts::fast_acquire(keys, owner, ttl_ms);
    match ask {
        Ask::Grant => {}
        Ask::Watch => {
            pipeline.cmd("PTTL").arg(keys.lock());
            pipeline
                .cmd("SET")
                .arg(keys.watched())
                .arg(1)
                .arg("PX")
                .arg(millis(WATCHED))
                .ignore();
        }
        Ask::Gate(gate) => {
            pipeline.cmd("EXISTS").arg(&**gate);
        }
    }
    let what = Operation("acquire", keys);
    let reply = match ask {
        Ask::Grant => node
            .query::<(Option<String>, i64)>(&pipeline, &what)
            .await
            .map(|(set, fence)| (set, fence, -1)),
        Ask::Watch | Ask::Gate(_) => {
            node.query::<(Option<String>, i64, i64)>(&pipeline, &what)
                .await
        }
    };
    let queued = |third: i64| matches!(ask, Ask::Gate(_)) && third == 1;
    match reply {
        Ok((set, fence, third)) => match u64::try_from(fence) {
            // Waiters in line: a newcomer gives way whatever this node said.
            Ok(fence) if fence > 0 && queued(third) => Vote::Queued,
            Ok(fence) if fence > 0 && set.is_some() => Vote::Granted(fence),
            Ok(fence) if fence > 0 => Vote::Refused {
                fence,
                pttl: match ask {
                    Ask::Watch => u64::try_from(third).ok(),
                    _ => None,
                },
            },
            _ => Vote::Failed(Error::new(
                ErrorKind::Backend,
                BACKEND,
                format!(
                    "{}: {what}: unexpected fence {fence}; is another program writing to this \
                     namespace?",
                    node.server()
                ),
            )),
        },
        Err(error) => Vote::Failed(error),
    }
}

#[async_trait]
impl LockBackend for RedlockBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    /// # Cancel safety
    ///
    /// Dropping the future at any await, or an error, leaves no grant
    /// beyond what an [`Undo`] clears: in the background it releases this
    /// owner's key on every node (owner-checked, so harmless where it holds
    /// none). Where no runtime is reachable, a grant expires at its TTL.
    async fn acquire(&self, request: AcquireRequest) -> Result<Grant> {
        self.check_open()?;
        self.inner.background.capture();
        let keys = Arc::new(LockKeys::new(
            &self.inner.options.namespace,
            request.name.as_str(),
        ));
        // The attempt under way; earlier ones gave back what they were granted.
        let current = Mutex::new(Arc::from(""));
        let abandon = Undo::new(
            &self.inner.background,
            (self, &keys, &current),
            |(backend, keys, current): (&Self, &Arc<LockKeys>, &Mutex<Arc<str>>)| {
                let (backend, keys) = (backend.clone(), keys.clone());
                let value = current
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                async move {
                    let all: Vec<usize> = (0..backend.nodes()).collect();
                    backend.give_back(&keys, &value, &all).await;
                }
            },
            |_| {
                tracing::debug!(
                    "abandoned acquire with no runtime reachable; a grant expires at its TTL"
                )
            },
        );
        let granted = self.acquire_waiting(&keys, &current, &request).await;
        // A refusal gave back what it was granted already.
        if granted.is_ok()
            || granted.as_ref().is_err_and(|error| {
                matches!(error.kind(), ErrorKind::Contended | ErrorKind::Timeout)
            })
        {
            abandon.disarm();
        }
        granted
    }

    async fn extend(&self, claim: &Claim, ttl: Duration) -> Result<Option<Instant>> {
        self.check_open()?;
        let (nodes, quorum) = (self.nodes(), self.inner.quorum);
        let (keys, owner) = self.claimed(claim);
        let ttl_ms = millis(ttl);
        let sent = Instant::now();
        let valid_until = sent + ttl.saturating_sub(self.inner.options.drift(ttl));
        let requests = self.ask(&[], |member| {
            let (keys, owner) = (keys.clone(), owner.clone());
            async move {
                let what = Operation("extend", &keys);
                let invocation = Scripts::get().extend(&keys, &owner, ttl_ms);
                member
                    .node()
                    .run::<i64>(&invocation, &what)
                    .await
                    .map(|(code, _)| code)
            }
        });
        let done = |code: &Result<i64>| matches!(code, Ok(code) if OwnerCheck::decode(*code) == Some(OwnerCheck::Done));
        let round = Round::gather(
            Round::unanswered(nodes),
            requests,
            (sent, self.inner.options.node_timeout, valid_until),
            |answers| {
                count(answers, done) >= quorum
                    || count(answers, |code| !done(code)) > nodes - quorum
            },
        )
        .await;
        let extended = round.count(done);
        if extended >= quorum && Instant::now() < valid_until {
            return Ok(Some(valid_until));
        }
        let failed = round.count(Result::is_err) + round.pending.len();
        if extended + failed < quorum {
            return Err(self.expired("extend", claim, extended));
        }
        Err(self.unavailable("extend", &keys, &round))
    }

    async fn release(&self, claim: &Claim) -> Result<()> {
        self.check_open()?;
        let (nodes, quorum) = (self.nodes(), self.inner.quorum);
        let (keys, owner) = self.claimed(claim);
        let sent = Instant::now();
        let requests = self.ask(&[], |member| {
            let (keys, owner) = (keys.clone(), owner.clone());
            async move {
                let what = Operation("release", &keys);
                member.node().release_announced(&keys, &owner, &what).await
            }
        });
        let done = |code: &Result<i64>| matches!(code, Ok(code) if OwnerCheck::decode(*code) == Some(OwnerCheck::Done));
        let mut round = Round::gather(
            Round::unanswered(nodes),
            requests,
            (sent, self.inner.options.node_timeout, sent + REPEAT_FOR),
            |answers| count(answers, done) >= quorum || answers.iter().all(Option::is_some),
        )
        .await;
        let released = round.count(done);
        let failed = round.count(Result::is_err) + round.pending.len();
        // The rest still runs: a node slow to answer is released too.
        // Every node was sent its release (the round polled each request
        // once); the replies of the slow ones are not needed.
        drop(std::mem::take(&mut round.pending));
        if released >= quorum || (released + failed >= quorum && failed < quorum) {
            // Where it held a majority, no majority holds it now: the
            // nodes that failed keep its key at most until its TTL.
            return Ok(());
        }
        if released + failed < quorum {
            return Err(self.expired("release", claim, released));
        }
        Err(self.unavailable("release", &keys, &round))
    }

    /// Held when one owner holds the lock's key on a majority of nodes;
    /// its remaining TTL is the one the majority holds it for (the
    /// quorum-th longest). Free when no owner can reach a majority even
    /// counting the nodes that did not answer; otherwise `Unavailable`.
    /// Not its fencing token, which a majority's counters bound from above
    /// only (see [`lockkit_redis`]'s status), nor when or by whom it was
    /// taken, which Redis does not keep.
    async fn status(&self, name: &LockName) -> Result<LockStatus> {
        self.check_open()?;
        let keys = LockKeys::new(&self.inner.options.namespace, name.as_str());
        let timeout = self.inner.options.node_timeout;
        let reads = futures_util::future::join_all(self.inner.members.iter().map(|member| {
            let node = member.node();
            let keys = &keys;
            async move {
                match tokio::time::timeout(timeout, node.holder(keys)).await {
                    Ok(read) => read,
                    Err(_) => Err(Error::new(
                        ErrorKind::Unavailable,
                        BACKEND,
                        format!("no answer within {timeout:?}"),
                    )
                    .at(node.server())),
                }
            }
        }))
        .await;
        let quorum = self.inner.quorum;
        let mut held: HashMap<String, Vec<Duration>> = HashMap::new();
        let mut failures = Vec::new();
        for read in reads {
            match read {
                Ok(Some((owner, left))) => held.entry(owner).or_default().push(left),
                Ok(None) => {}
                Err(error) => failures.push(error.to_string()),
            }
        }
        let most = held.values().map(Vec::len).max().unwrap_or(0);
        if let Some(mut lefts) = held.into_values().find(|lefts| lefts.len() >= quorum) {
            lefts.sort_unstable_by(|a, b| b.cmp(a));
            let left = lefts.get(quorum - 1).copied().unwrap_or_default();
            return Ok(LockStatus::Held(Holder::new(Expiry::In(left))));
        }
        if most + failures.len() < quorum {
            return Ok(LockStatus::Free);
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            BACKEND,
            format!(
                "read the holder of `{name}`: {} of {} nodes failed, so whether a majority \
                 holds it is unknown: {}",
                failures.len(),
                self.nodes(),
                failures.join("; ")
            ),
        )
        .at(self.inner.servers.clone()))
    }

    /// Each node's `redis_version`: one version if they all report the
    /// same (`7.0.15 on all 5 nodes`), else each node's, with a node that
    /// failed to answer or hides `INFO` from this user said as such.
    async fn server_version(&self) -> Result<String> {
        self.check_open()?;
        let versions = futures_util::future::join_all(
            self.inner
                .members
                .iter()
                .map(|member| member.node().version()),
        )
        .await;
        let mut reported = Vec::new();
        for (member, version) in self.inner.members.iter().zip(versions) {
            let server = member.node().server();
            match version {
                Ok(Some(version)) => reported.push((server, version)),
                Ok(None) => reported.push((server, "version hidden from this user".to_owned())),
                Err(error) => reported.push((server, format!("unreachable ({error})"))),
            }
        }
        let first = reported.first().map(|(_, version)| version.clone());
        if let Some(first) =
            first.filter(|first| reported.iter().all(|(_, version)| version == first))
        {
            return Ok(format!("{first} on all {} nodes", reported.len()));
        }
        Ok(reported
            .iter()
            .map(|(server, version)| format!("{server}: {version}"))
            .collect::<Vec<_>>()
            .join(", "))
    }

    /// Refuses every later call, lets late grants be given back (for up to
    /// [`REPEAT_FOR`]), then drops every node's connections. Keys of leases
    /// not released through a [`Locker`](lockkit_core::Locker) expire at
    /// their TTL.
    async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        if !self.inner.background.settle(REPEAT_FOR).await {
            tracing::warn!(
                servers = self.inner.servers,
                "close: late grants still being given back; closing anyway"
            );
        }
        for member in &self.inner.members {
            member.gate.close().await?;
        }
        Ok(())
    }
}
