//! lockkit's ZooKeeper backend: a correctness lock on a ZooKeeper ensemble,
//! Apache Curator's `InterProcessMutex` recipe of ephemeral sequential
//! nodes, first come first served, fenced by the node's czxid.
//!
//! ```no_run
//! use std::time::Duration;
//! use lockkit_core::{Acquire, Locker};
//! use lockkit_zk::ZkBackend;
//!
//! # async fn run() -> lockkit_core::Result<()> {
//! let backend = ZkBackend::connect("zk://10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181/locks").await?;
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
//! - **Mutual exclusion as far as ZooKeeper's own guarantees reach**: every
//!   lock node is created and deleted through the ensemble's atomic
//!   broadcast, so it holds across server crashes, leader elections and
//!   restarts while a quorum lives. A client that is paused or cut off
//!   longer than its session timeout loses its locks at the server, and
//!   its leases report Lost by then (below); pair the lock with the fencing
//!   token at the protected resource for the rest.
//! - **Fencing token = the czxid of the lock node**: the zxid of the
//!   transaction that created it — the ensemble's one counter of
//!   transactions (epoch in the high 32 bits, so it grows across leader
//!   elections too). Tokens strictly increase across the grants of a name,
//!   across every node of the ensemble in fact.
//! - **FIFO**: waiters queue by sequence number; each watches the node just
//!   before its own, so a release wakes exactly the next waiter (no herd).
//!
//! # The recipe
//!
//! The layout is Curator's `InterProcessMutex` with its protection mode:
//! `<chroot>/<namespace>/<name>/_c_<guid>-lock-<sequence>` (see
//! [`keys`]), so a Curator client on the path `/<namespace>/<name>` — or
//! `zookeeper-client`'s lock with `LockPrefix::new_curator` — queues with
//! lockkit on the same name, either way round.
//!
//! 1. Create the node, ephemeral sequential, with a fresh GUID in its name,
//!    and — sent right behind it, answered after it — list the parent's
//!    children: one round trip. A missing parent is created, as a
//!    **container** node (`<namespace>` too): the server deletes a
//!    container once its last child is gone, so a name used once leaves no
//!    znode behind.
//! 2. If the create's answer is lost (the connection dropped), the node may
//!    exist: lockkit `sync`s and looks for its GUID among the children
//!    (Curator's protection mode) and takes that node, rather than create a
//!    second one.
//! 3. If no lock node has a lower sequence, it is held — its
//!    `ephemeralOwner` is checked to be this session. Otherwise lockkit sets a
//!    watch on the node just before its own, and one on its own node, and
//!    lists again when the one before goes — unless that one was the only
//!    node before its own: no node created later sorts before it, so it is
//!    first, with no list (a handoff is the holder's delete and one watch
//!    event). Its own node's watch fires first if someone deletes that node
//!    while it waits: the acquire then joins the queue again, at its end,
//!    and never takes its predecessor's deletion for its turn.
//! 4. Release deletes the node. Releases that come while another's delete
//!    is in flight go out together when it answers, as one `multi` — a
//!    group commit: many tasks on one backend release for one write of the
//!    ensemble. A `multi` the server refuses (one node of it already gone)
//!    deletes nothing, and each of its deletes goes out again alone.
//!
//! # One session
//!
//! Every lock of a backend is an ephemeral node of **one session**, on one
//! connection: 10,000 locks held at once are 10,000 nodes of one session.
//! ZooKeeper allows 60 connections per client address by default
//! (`maxClientCnxns`): one backend uses one; share a backend (it is cheap
//! to clone) rather than connect one per task. The acquire's TTL is **not**
//! a per-lock bound here (capability `Session`): a lock lives as long as
//! the session.
//!
//! - **Held** until the last answered heartbeat's send instant plus the
//!   session timeout the ensemble granted, minus the drift allowance (1 %
//!   of it plus 10 ms). A heartbeat (an `exists` of the chroot) goes out
//!   every third of the session timeout, and each answer moves that bound.
//! - **Uncertain** while the connection is lost (Curator's SUSPENDED) or a
//!   heartbeat goes unanswered; **Held** again once the client is back on
//!   a server within the session and a heartbeat is answered.
//! - **Lost** when the bound passes unconfirmed — by itself, on the
//!   client's monotonic clock, never before it — or at once when the
//!   ensemble says the session expired (Curator's LOST). Then every lock on
//!   it is Lost, and the next acquire establishes a new session. A session
//!   whose bound passed is closed as soon as a server answers, since its
//!   holders were told it is gone.
//! - A lock node deleted by someone else (`zkCli.sh delete`) turns its
//!   lease Lost: each held node is watched — through the watch of its
//!   queue's children that the acquire's list set, or of the node itself
//!   if it waited.
//!
//! [`Lease::extend`](lockkit_core::Lease::extend) sends a heartbeat and
//! reads the node: still there, of this session, at its czxid, it returns
//! the session's bound.
//!
//! # Cancellation and close
//!
//! An acquire dropped at any await deletes its node in the background —
//! found by its GUID if the create's answer had not come — and an acquire
//! that gives up at its deadline, or a try that found the lock held, deletes
//! its node before it answers. A delete that fails before an answer is tried
//! again in the background, for as long as the session lives, and so is a
//! release's: no node stays in a queue while its session lives.
//!
//! [`Locker::close`](lockkit_core::Locker::close) closes the session (the
//! server deletes every node of this client at once), ends every wait and
//! turns every lease Lost. Dropping the last clone of a backend closes its
//! session too, once a server answers.
//!
//! # Reading a lock's holder
//!
//! `Locker::status` lists the lock's children: the holder is the lock node
//! with the lowest sequence (lockkit's or Curator's); its czxid is the
//! fencing token, its `ephemeralOwner` the holder's session, its ctime
//! (the server's clock) when it joined the queue — at or before the grant,
//! which ZooKeeper does not record. `server_version` asks the
//! servers with the `srvr` four-letter word, which ZooKeeper allows unless
//! `4lw.commands.whitelist` leaves it out: the client protocol does not
//! carry a version.
//!
//! # URLs
//!
//! `zk://host:2181,host:2182,host:2183/chroot`: every server is used, the
//! port defaults to 2181, and the chroot — created if missing, as a
//! persistent node — is the root every path is under. For digest auth the
//! user comes once, before the first server:
//! `zk://app:secret@host:2181,host:2182/locks` (percent-encode `@`, `:`,
//! `,` and `/` in the password); nodes are created with the open ACL, as
//! Curator's default, so Curator clients of other users can queue too.
//! TLS and SASL to ZooKeeper are not supported yet. An error names what is
//! wrong and never repeats the password.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]
#![forbid(unsafe_code)]

mod backend;
mod deletes;
mod error;
pub mod keys;
mod options;
mod request;
mod session;
mod url;
mod version;

pub use backend::ZkBackend;
pub use options::{ZkConfig, ZkOptions, MIN_SESSION_TIMEOUT};
/// The driver, re-exported for tests and tools that read lockkit's nodes.
pub use zookeeper_client;
