//! lockkit's etcd backend: a correctness lock on an etcd cluster, first
//! come first served, fenced by the lock key's create revision.
//!
//! ```no_run
//! use std::time::Duration;
//! use lockkit_core::{Acquire, Locker};
//! use lockkit_etcd::EtcdBackend;
//!
//! # async fn run() -> lockkit_core::Result<()> {
//! let backend = EtcdBackend::connect("etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379").await?;
//! let locks = Locker::new(backend);
//! let lease = locks
//!     .acquire("billing:user-42", Acquire::ttl(Duration::from_secs(30)).wait(Duration::from_secs(5)))
//!     .await?;
//! // … protected work, fenced by lease.fencing_token() …
//! lease.release().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # What it promises
//!
//! [`Capabilities`](lockkit_core::Capabilities): safety class
//! **correctness**, **linearizable** fencing tokens, **session** leases
//! with a server-side timeout, waiting by **notification**, **FIFO**.
//!
//! - **Mutual exclusion as far as etcd's own guarantees reach**: every
//!   decision is a linearizable transaction or read on the cluster's Raft
//!   log, so it holds across member crashes, leader elections and restarts
//!   while a majority of members lives. A client that is paused or cut off
//!   longer than its session TTL loses its locks at the server, and its
//!   leases report Lost by then (below); pair the lock with the fencing
//!   token at the protected resource for the rest.
//! - **Fencing token = the create revision of the lock key**: etcd's
//!   cluster-wide revision counter, so tokens strictly increase across the
//!   grants of a name — across every key of the cluster, in fact — and
//!   survive leader changes and restarts. Release and extend compare the
//!   create revision in a transaction: a stale holder changes nothing and
//!   gets `NotHeld`.
//! - **FIFO**: waiters queue by create revision; each waits until every
//!   key older than its own is gone, so a release lets exactly the next
//!   waiter in.
//!
//! # The recipe, and why not etcd's Lock RPC
//!
//! The lock is etcd's `concurrency.Mutex` recipe, done here:
//!
//! 1. One transaction: if `<namespace>/<name>/<lease id in hex>` does not
//!    exist (create revision 0), put it with the session lease, and read
//!    every key of `<namespace>/<name>/` (keys only). If no key is older
//!    than ours, it is held.
//! 2. Otherwise wait until every key older than ours (a lower create
//!    revision) is deleted. Keys older than ours can only go, never come,
//!    so then ours is the oldest. Before reporting Held, lockkit confirms
//!    that its own key still stands at the revision it got: the watch
//!    below delivers deletes in revision order and saw none of it by the
//!    last older key's delete; where the watch cannot vouch for that (it
//!    was opened again meanwhile), a read in a transaction that compares
//!    our key's create revision does.
//!
//! etcd 3.4's server-side Lock RPC returns after waiting without re-checking
//! the waiter's key, so it can report a lock held whose key is gone
//! (etcd-io/etcd#11456); lockkit never uses it. The layout is the
//! recipe's, so `etcdctl lock <namespace>/<name>` and Go's
//! `concurrency.NewMutex(session, "<namespace>/<name>")` queue with lockkit
//! on the same name, either way round. In a key, `%` and `/` in the
//! namespace or name are written `%25` and `%2F` (see [`keys::segment`]),
//! so two names never share a queue: a name without them is spelt as it
//! is, and only such names queue with etcdctl and Go. Those tools nest
//! (`etcdctl lock ns/a/b` puts its key inside the range of `ns/a/`, and Go's
//! `ns/a` waits for it); lockkit counts only a queue's own keys, one level
//! deep, so another tool's deeper lock never blocks a lockkit name.
//!
//! # Waiting without the 100 ms loop
//!
//! A watch opened at a past revision is served by etcd 3.4's "unsynced
//! watcher" loop, every 100 ms: that is what holds Go's `Mutex` and the Lock
//! RPC to about 160 handoffs a second. lockkit opens **one watch per
//! backend, from now**, on every delete under the namespace, and waits
//! until the server created it before connect returns. A waiter registers
//! its interest in the keys ahead of its own and *then* reads the queue: each
//! of their deletes is seen by the read or delivered by the watch, never
//! missed, and never waits for the loop. A handoff costs the holder's delete
//! and its event, no further request. No poll, no sleep. The watch
//! shares the client's gRPC connection, and every backend of a namespace
//! sees every delete in it — a release costs each other client of the
//! namespace one small event; use namespaces to keep unrelated fleets apart.
//! The watch is checked by a progress request every third of the session
//! TTL; one unanswered within the response timeout, or a broken stream,
//! opens it again (from now), and one read of the namespace then tells which
//! held keys went meanwhile. Every request carries etcd's `hasleader`
//! requirement, so a member cut off from its leader cancels the watch and
//! refuses requests rather than answer from a store that stopped moving.
//!
//! # One session lease
//!
//! Every lock of a backend is attached to **one lease**, granted at connect
//! with [`session_ttl`](EtcdOptions::session_ttl) (default 10 s, at least
//! 2 s, whole seconds) and kept alive every third of it on one stream:
//! 10,000 locks held at once are 10,000 keys on one lease, one watch and
//! one gRPC channel — one connection, to the leader (see
//! [`prefer_leader`](EtcdOptions::prefer_leader)), or one per member once
//! spread. The acquire's TTL is **not** a per-lock bound here
//! (capability `Session`): a lock lives as long as the session.
//!
//! - **Held** until the last acknowledged keep-alive's send instant plus
//!   the TTL, minus the drift allowance (1 % of the TTL plus 10 ms); each
//!   answer moves that bound.
//! - **Uncertain** while keep-alives fail (members down, no leader, a cut
//!   network) or while the delete watch is being opened again; **Held**
//!   again when they answer, before the bound.
//! - **Lost** when the bound passes unconfirmed — by itself, on the
//!   client's monotonic clock, never before it — or at once when the server
//!   answers that the lease is gone (expired, or `etcdctl lease revoke`).
//!   Then every lock on it is Lost, and the next acquire grants a new session
//!   lease. A lease whose bound passed is revoked as soon as a member
//!   answers, since its holders were told it is gone.
//! - A lock key deleted by someone else (`etcdctl del`) turns its lease
//!   Lost when the watch delivers the delete, and the next waiter gets the lock.
//!
//! [`Lease::extend`](lockkit_core::Lease::extend) reads the key: still there
//! at its create revision, it returns the session's bound.
//!
//! # Reading a lock's holder
//!
//! `Locker::status` reads the name's queue in one linearizable range: the
//! holder is the key with the lowest create revision — lockkit's, `etcdctl
//! lock`'s or a Go `concurrency.Mutex`'s — whose create revision is its
//! fencing token and whose lease id names it (`etcd lease 694d8a1b2c3d`).
//! etcd keeps no grant time. `server_version` is the version the `Status`
//! call of the member in use reports.
//!
//! # Cancellation and close
//!
//! An acquire dropped at any await deletes its key in the background (its
//! put may have landed), and an acquire that gives up at its deadline, or a
//! try that found the lock held, deletes its key before it answers. A
//! delete that fails before an answer (members down, no leader) is tried
//! again in the background, for as long as the session lease is kept alive,
//! and so is a release's: no key stays in a queue while its lease lives.
//! Within one backend, one owner at a time queues for a
//! name (one key per session, as in the recipe); the others wait for it in
//! the client, in arrival order; a try that finds only this client's own
//! withdrawal in the way waits for it rather than report the lock held.
//!
//! [`Locker::close`](lockkit_core::Locker::close) revokes the session lease
//! (the server deletes every key of this client at once), ends every wait,
//! turns every lease Lost and stops the watch.
//!
//! # URLs
//!
//! `etcd://host:2379,host:22379,host:32379`: every member is used. At
//! connect the backend asks which member leads and sends everything there
//! ([`prefer_leader`](EtcdOptions::prefer_leader)); the first request that
//! fails before an answer spreads it over every member, and a member that
//! fails is then left for the others. The port defaults to 2379. For a cluster with auth enabled,
//! the user comes once, before the first member:
//! `etcd://app:secret@host:2379,host:22379` (percent-encode `@`, `:`, `,`
//! and `/` in the password). TLS to etcd (`https`) is not supported yet.
//! An error names what is wrong and never repeats the password.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]
#![forbid(unsafe_code)]

mod affinity;
mod backend;
mod deletions;
mod error;
pub mod keys;
mod options;
mod request;
mod session;
mod url;

pub use backend::EtcdBackend;
/// The driver, re-exported for tests and tools that read lockkit's keys.
pub use etcd_client;
pub use options::{EtcdConfig, EtcdOptions, MIN_SESSION_TTL};
