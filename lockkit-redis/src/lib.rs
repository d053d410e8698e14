//! lockkit's single-Redis backend: the lock most teams need, done carefully.
//!
//! A lock is one key, `<namespace>:{<name>}`, holding the owner's random
//! token with a TTL.
//!
//! - **acquire** first sends `SET NX PX` of the key and `INCRBY 2` of the
//!   per-name fence key `<namespace>:{<name>}:fence` (the fencing token),
//!   pipelined: one round trip and no script, what an uncontended lock
//!   costs a user who writes it by hand, plus the increment. A held lock
//!   takes it to the acquire script (a waiting acquire queues there);
//!   a grant that found waiters queued (an odd fence says so) is given
//!   back first. [`scripts::fast_acquire`] says why that stays safe
//!   although the two commands are not one atomic step. With
//!   [`RedisOptions::min_replicas`] every acquire goes by script: a refused
//!   attempt then writes nothing for the replicas to acknowledge;
//! - **extend** and **release** are Lua scripts, one round trip each, that
//!   compare the stored owner first; a stale owner gets
//!   [`NotHeld`](lockkit_core::ErrorKind::NotHeld) and changes nothing.
//!
//! All keys of one lock share the hash tag `{<name>}`, so a Redis Cluster
//! would keep them in one slot. Scripts run by `EVALSHA`, loaded again by
//! themselves after a `NOSCRIPT` (a restarted or flushed server).
//! A refused acquire skips a fencing token: tokens strictly increase across
//! grants, but not by one.
//!
//! Every client of a namespace must run this version or a later one: the
//! fence's parity says whether waiters queue, and a client from before it
//! (which added 1 per grant) leaves it wrong. Exclusion and the order of
//! fencing tokens hold regardless; first come, first served does not until
//! the queue's next waiter renews its place (within a second) — a newcomer
//! may go ahead of it.
//!
//! # Waiting: a fair queue in Redis, woken by pub/sub
//!
//! A blocked acquire takes a place in a per-name queue kept in Redis (in
//! arrival order), naming its backend's own channel. A release hands the
//! lock straight to the first live waiter and publishes that waiter's owner
//! and fencing tokens on its channel, where the backend's one subscriber
//! connection hands them to exactly that waiter: it holds the lock without
//! another round trip. So a release wakes one waiter, not all of them,
//! waiters are served first come first served across every client, and
//! `try_acquire` never jumps the queue. If a holder dies without releasing,
//! waiters retry when its TTL runs out, never on a fixed delay. A waiter's
//! place lasts [`QUEUE_PLACE`] unless renewed (every third of it, while
//! waiting), so a waiter that dies holds the queue up for at most that.
//!
//! # Reading a lock's holder
//!
//! `Locker::status` (and `lockkit status`) reads whether a name is held and
//! the TTL it has left (`GET` and `PTTL` in one `MULTI`). Not the holder's
//! fencing token — the fence key also counts refused fast attempts and
//! queue changes, so it is at or above the holder's token — nor when or by
//! whom it was taken: Redis keeps neither. `server_version` is
//! `redis_version` from `INFO server`.
//!
//! # What connect checks
//!
//! - The URL: parts the driver would silently ignore (a `user:password@`
//!   in a Unix-socket URL, unknown query parameters, `?db=` in a TCP URL)
//!   and `#insecure` (TLS without checking the certificate) are refused,
//!   naming them.
//! - The server answers (`PING`), within `connect_timeout` and `response_timeout`.
//! - It is a **primary**: a replica is refused with a `Config` error naming
//!   its primary (a lock must be written where it is granted). A server
//!   that becomes a replica later (failover) makes each write fail with
//!   `Unavailable` saying so.
//! - Its **`maxmemory-policy`** is `noeviction`. Every other policy can
//!   evict a key with a TTL — a held lock's key — under memory pressure,
//!   and the lock would be granted again; such a server is refused with a
//!   `Config` error naming the setting, unless
//!   [`RedisOptions::allow_eviction`] accepts the risk.
//! - It is **not a cluster node** (`cluster_enabled:1`): a node refuses the
//!   keys of slots it does not serve, so some names would fail; such a
//!   server is refused with a `Config` error.
//! - A server without an append-only file (`appendonly no`) is let through
//!   with a warning in the log: a restart forgets the locks and fence
//!   counters written since its last snapshot (see fencing, below).
//! - A user who may not run `INFO` (`-@dangerous` takes it away) is let
//!   through with a warning in the log: the policy and the cluster mode are
//!   then unchecked (a replica is still found, below).
//! - The user may **do all that lockkit does**, found by doing it once:
//!   publishing on the backend's hand-over channel, subscribing to it (the
//!   subscription waiters use, so connect opens both of the backend's
//!   connections), and running every command on every path — grant, queued
//!   waiter, extension, hand-over, release, withdrawal — on a lock of its
//!   own whose keys are deleted after. An ACL that lacks a command (a
//!   least-privilege `+@read +@write +@scripting` lacks `TIME`, which only
//!   a queued waiter's script runs), a key pattern, or the channels (a new
//!   Redis 7 user has none: `acl-pubsub-default resetchannels`) would
//!   otherwise fail the first contended acquire with the lock held; it is
//!   refused with a `Config` error naming what was refused and one `ACL
//!   SETUSER` that grants it all. A replica the user could not see through
//!   `INFO` is refused here too. Subscribing needs RESP3: a server without
//!   it (before Redis 6, or a proxy that drops Pub/Sub) is refused saying so.
//!
//! # Dropped connections and close
//!
//! Release, extend, and a cancelled waiter leaving its queue are
//! owner-checked, so a failure before the server answered — a connection
//! dropped by a network blip, a load balancer's idle timeout, a restart — is
//! repeated on the reconnected connection for up to
//! [`REPEAT_FOR`](lockkit_core::REPEAT_FOR) (5 s), or until the lease's
//! validity ends if sooner, instead of leaving the lock held for its whole
//! TTL. A release therefore returns within that bound plus one reply
//! timeout ([`RedisOptions::response_timeout`]).
//!
//! [`Locker::close`](lockkit_core::Locker::close) ends waiting acquires,
//! releases held leases, lets cancelled acquires leave their queues, and
//! then this backend drops its command and subscriber connections; every
//! later call fails with a non-retryable `Unavailable`.
//!
//! # What it promises, and what it does not
//!
//! Redis is an [efficiency](lockkit_core::SafetyClass::Efficiency) lock: it
//! never admits two holders while the server keeps its data, but a failover
//! to a replica that had not yet received a grant can grant the lock again.
//! [`RedisOptions::min_replicas`] closes most of that window (the grant is
//! not reported until that many replicas have it) but not all of it: Redis
//! replication stays asynchronous, and a replica that acknowledged can still
//! be the one not promoted.
//!
//! Fencing tokens are [best effort](lockkit_core::FencingGuarantee::BestEffort):
//! they strictly increase while the fence key survives. They can repeat
//! after a failover to a replica that missed the increment, after a restart of a
//! server without persistence (`appendonly` off and no snapshot since), or if
//! someone deletes the fence key. Fence keys never expire: each name ever
//! locked keeps one small integer key in its namespace.
//!
//! ```no_run
//! use std::time::Duration;
//! use lockkit_core::{Acquire, Locker};
//! use lockkit_redis::{RedisBackend, RedisOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> lockkit_core::Result<()> {
//! let backend = RedisBackend::connect("redis://127.0.0.1:6379", RedisOptions::new()).await?;
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
mod error;
pub mod keys;
pub mod node;
mod options;
pub mod scripts;
pub mod subscriber;
mod waiters;

pub use backend::RedisBackend;
pub use options::{RedisConfig, RedisOptions, QUEUE_PLACE};
