//! lockkit's Redlock backend: a lock held on a majority of N independent
//! Redis servers, so one server's crash or failover does not lose it — and,
//! beyond every other Redlock, a fencing token that increases.
//!
//! The algorithm is the distlock spec's (<https://redis.io/docs/latest/develop/use/patterns/distributed-locks/>),
//! run on each node with [`lockkit_redis`]' own commands and scripts.
//!
//! # Acquire
//!
//! Every node is asked at once (`SET <ns>:{<name>} <value> NX PX <ttl>` and
//! `INCRBY` of the name's fence, one round trip per node). The lock is held
//! iff a majority, N/2 + 1, granted and the validity — TTL − elapsed −
//! (`drift_factor` × TTL + 2 ms), all on the monotonic clock from the
//! instant the requests were sent — is still positive. The acquire returns
//! as soon as a majority granted (**resolved on quorum**): it never waits
//! for the slowest node. A node that has not answered within
//! [`node_timeout`](RedlockOptions::node_timeout) of the first answer
//! counts as failed, and its grant, if one comes later, is given back in
//! the background; a grant that comes after the return but within that
//! time is kept (the lease's release and extensions reach every node). An
//! attempt that fails releases this owner's key on every node that granted
//! or did not answer.
//!
//! Each attempt sets a value of its own (the lease's owner token and the
//! attempt's number), carried in the grant to extend and release: giving
//! back an earlier attempt's late grant never removes a later one's.
//!
//! # The fencing token
//!
//! Each node's vote returns its fence counter after the increment; the
//! token is the highest among the nodes that granted. Before the grant is
//! reported, a majority of the granting nodes must hold a fence at least
//! that high: nodes that returned the token itself already do, and the
//! others are raised (`fence := max(fence, token)`, one more round, only
//! when fewer than a majority returned it). Every other node that answers
//! with a lower fence is raised in the background. So any later majority
//! shares a node with that majority, whose fence has seen the token, and
//! the next token is strictly higher — across majorities that differ, as
//! when nodes fail in turn.
//!
//! The guarantee is [best effort](lockkit_core::FencingGuarantee::BestEffort):
//! a token **can repeat** when the nodes a later majority shares with the
//! write-back have lost their data — a restart without persistence, which
//! can be a single node when the write-back reached only a bare majority.
//! Prevent it with `appendfsync always` on every node, or by keeping a
//! restarted node out of service for at least the longest TTL in use (the
//! distlock spec's delayed restart), after which the write-backs of later
//! grants have reached it again.
//!
//! # Waiting
//!
//! Nothing sleeps on a fixed delay. An acquire that finds the lock held
//! takes its place in a line: the fair queue of a single-Redis lock (see
//! [`lockkit_redis`]) on the lock's *gate node*, one of the N chosen by
//! the name. Waiters in line send nothing; the one at the front tries
//! whenever a release is announced — a release publishes on each node
//! while waiters watch the lock — and when the holder's keys run out (read
//! from their `PTTL`), and hands the front to the next once it holds the
//! lock, before its acquire returns (so a holder stopped right after its
//! grant holds the line up for its lease, not for the gate's 3 s). A newcomer that finds waiters in line gives its grants back and
//! joins the line, and `try_acquire` then fails `Contended`: nobody jumps
//! the line while the gate node answers. Where it does not — refused at
//! once, or silent for [`response_timeout`](RedlockOptions::response_timeout),
//! which a paused gate node costs a waiter first — waiters try without a
//! line: when woken, after a random pause of up to
//! [`retry_jitter`](RedlockOptions::retry_jitter) (none for those that
//! waited longest), asking the lock's first node alone first, so waiters
//! woken together do not split the votes. Either way a waiter tries again
//! at least once a second.
//!
//! # Extend and release
//!
//! Both are owner-checked on every node. An extension holds iff a majority
//! extended within the new validity. A release succeeds when no majority
//! can still hold the key (the nodes that failed keep it at most until its
//! TTL); it is [`NotHeld`](lockkit_core::ErrorKind::NotHeld) when fewer
//! than a majority still had it (it had expired).
//!
//! # Reading a lock's holder
//!
//! `Locker::status` reads every node: held when one owner holds the key on
//! a majority, with the TTL that majority holds it for (the quorum-th
//! longest); free when no owner can reach a majority even counting the
//! nodes that did not answer; otherwise `Unavailable`. No token, grant time
//! or holder: see the Redis backend's reasons. `server_version` gives each
//! node's `redis_version` (one, if they agree).
//!
//! # What connect checks
//!
//! - At least 3 nodes; each server once, by address and by `run_id` (two
//!   names for one server would fake a majority); no replica; and on each
//!   node what [`lockkit_redis`] checks (no cluster node, no evicting
//!   `maxmemory-policy` unless allowed, a warning without an append-only
//!   file) and that its user may run every command of every step.
//! - Every node must answer at connect, so that each is checked; once
//!   connected, up to N − (N/2 + 1) may fail at any time.
//!
//! # What it protects against, and what not
//!
//! Redlock is an [efficiency](lockkit_core::SafetyClass::Efficiency) lock.
//! It keeps one holder through the crash, restart or failover of fewer
//! than half of the nodes, while the nodes that granted keep their keys.
//! A node restarted *without* its data is the exception: where the lock is
//! held on a bare majority (N/2 + 1 nodes — as when others were down at
//! the grant), that one restart leaves fewer than a majority holding it,
//! and another client can be granted it, with a token that may be lower.
//! It does **not** protect against:
//!
//! - a process pause (GC, swap, SIGSTOP) past the validity: the holder's
//!   keys expire, another client acquires, and the paused one still
//!   believes it holds the lock until it looks at its lease — fence the
//!   protected resource with the token;
//! - clocks that jump on the servers (an expiry that comes early);
//! - a majority restarted without persistence (Kleppmann's scenario):
//!   recommend `appendfsync always` or a delayed restart of the longest
//!   TTL, as the spec does.
//!
//! In the README's decision tree: choose Redlock to survive one Redis
//! server's loss without a consensus system; choose PostgreSQL, etcd or
//! ZooKeeper when two holders must never happen.
//!
//! ```no_run
//! use std::time::Duration;
//! use lockkit_core::{Acquire, Locker};
//! use lockkit_redlock::RedlockBackend;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> lockkit_core::Result<()> {
//! let backend = RedlockBackend::connect(
//!     "redlock://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005",
//! )
//! .await?;
//! let locks = Locker::new(backend);
//! let lease = locks.acquire("billing:42", Acquire::ttl(Duration::from_secs(10))).await?;
//! println!("fencing token {}", lease.fencing_token());
//! lease.release().await?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]
#![forbid(unsafe_code)]

mod backend;
mod options;
mod quorum;
mod url;

pub use backend::RedlockBackend;
pub use options::{
    RedlockConfig, RedlockOptions, DRIFT_FLOOR, MIN_NODE_TIMEOUT, TTL_PER_NODE_TIMEOUT,
};
pub use url::node_urls;

/// The backend's name, as errors carry it.
const BACKEND: &str = "redlock";
