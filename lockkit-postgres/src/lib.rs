//! lockkit's PostgreSQL backend: advisory locks for correctness-critical
//! work whose data lives in PostgreSQL.
//!
//! ```no_run
//! use std::time::Duration;
//! use lockkit_core::{Acquire, Locker};
//! use lockkit_postgres::PostgresBackend;
//!
//! # async fn run() -> lockkit_core::Result<()> {
//! let backend = PostgresBackend::connect("postgres://app:secret@db:5432/app").await?;
//! let locks = Locker::new(backend.clone());
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
//! **correctness**, **linearizable** fencing tokens, **session** leases,
//! waiting in the **server's queue** (first come, first served).
//!
//! - **A lock is a session-level advisory lock** (`pg_try_advisory_lock`,
//!   `pg_advisory_lock`). It is held as long as the connection that took it
//!   lives; the acquire's TTL is not used and there is no expiry. Release
//!   it, or it ends with its connection.
//! - **Lost**: when that connection dies — `pg_terminate_backend`, a server
//!   restart, a network failure noticed by TCP keepalives within about
//!   11 s — every lease on it turns Lost at once (`Lease::lost` resolves),
//!   because the server has already released its locks. `Lease::extend`
//!   checks that the session is alive and still holds the lock in
//!   `pg_locks`. The backend reconnects by itself for the next acquire.
//! - **Fencing tokens** come from one sequence, `<schema>.fence` (schema
//!   `lockkit` by default), taken in the same statement as the lock and
//!   only if it was granted: no extra round trip, and the value is issued
//!   while the lock is held, so tokens strictly increase across the grants
//!   of a name — across every name, in fact — and survive restarts. The
//!   backend creates the schema and sequence on first use if they are
//!   missing (guarded by an advisory lock, so concurrent first uses do not
//!   race); create them in advance if the user may not create schemas:
//!   `CREATE SCHEMA lockkit; CREATE SEQUENCE lockkit.fence AS bigint MINVALUE 1;`
//!
//! # Names and keys
//!
//! An advisory lock is named by a 64-bit integer. lockkit hashes the
//! namespace and the name with FNV-1a 64 — documented and fixed, unlike
//! `hashtext` — and `#<integer>` names an explicit key; see [`lock_key`]
//! for the exact definition and the collision probability (about n²/2⁶⁵
//! for n names in use at once). An explicit key has one spelling: `#042`,
//! `#+42` and `#-0` are refused with `InvalidInput` naming the canonical
//! `#42` or `#0`, so two different names never share a lock except by that
//! hash collision.
//!
//! # Connections
//!
//! Locks are multiplexed: every lock taken without waiting is held on one of
//! [`sessions`](PostgresOptions::sessions) shared connections (1–4, default
//! 2), and their statements pipeline on them. **Holding 10,000 locks takes
//! those 2 connections.** In all, a backend opens at most `sessions +
//! max_waiters + max_transactions` connections (2 + 16 + 8 by default), and
//! the last two only while acquires wait or transactions are open.
//!
//! - **Waiting** happens in the server's own lock queue: an acquire that
//!   finds the lock held blocks in `pg_advisory_lock` under `lock_timeout`
//!   (its deadline) on a waiter connection, and the lock it gets stays on
//!   that connection until released. At most
//!   [`max_waiters`](PostgresOptions::max_waiters) acquires wait (or hold
//!   what they waited for) at once; more wait in the client, in arrival
//!   order, for a connection — and meanwhile re-check the lock without one
//!   (a try needs none), after 10 ms and then at most every 200 ms, so a
//!   client-side limit never keeps a free lock from being granted. When the
//!   deadline passes while every waiter connection was busy, the `Timeout`
//!   error says so: it names `max_waiters` and how many of its connections
//!   hold locks granted after waiting.
//! - A cancelled wait is cancelled at the server (`pg_cancel_backend`
//!   semantics) and a grant that raced the cancel is released, so no lock is
//!   left granted to nobody; that connection is then closed, never reused,
//!   because a cancel request that arrives late would cancel whatever ran
//!   next on it. A wait that reports `lock_timeout` (SQLSTATE 55P03) is
//!   checked for a lock granted in the same instant (PostgreSQL can report
//!   the timeout for a lock it just granted) before its connection is reused.
//! - **No stacking.** PostgreSQL counts session locks: a session that takes
//!   a key twice must unlock it twice, and a second grant to the same
//!   session would let two holders in. lockkit never lets that happen: the
//!   client records, per key and owner, which session holds or is trying
//!   for each lock, exactly under any interleaving of tries, waited grants,
//!   releases, cancellations and lost connections; a name this client
//!   already holds or is trying for (any owner) is **contended** for a
//!   try-acquire and waited for by an acquire, like any other holder's.
//!
//! # What connect checks
//!
//! - The URL parses and the server accepts the user (`Config` otherwise,
//!   naming what to check); the server is reachable (`Unavailable`).
//! - The connection string: parameters neither lockkit nor the driver
//!   reads, `load_balance_hosts=random` (it would spread one client's
//!   sessions over servers whose locks do not exclude each other), and
//!   certificate files with an `sslmode` that connects without TLS are
//!   refused, naming them.
//! - The role's and the database's `CONNECTION LIMIT` leave room for what
//!   this client may open (sessions + max_waiters + max_transactions);
//!   otherwise a contended acquire or a locked transaction would fail for
//!   want of a connection. A `Config` error names the limit, the options
//!   and the `ALTER ROLE … CONNECTION LIMIT` a DBA can run.
//! - Every connection, not only the first, reaches a server that is
//!   **writable** for this user (a host list may lead one to a standby): a hot standby, or a role or
//!   database whose sessions are read-only by default
//!   (`default_transaction_read_only`), is refused with a `Config` error
//!   naming why — every grant takes its fencing token with `nextval`.
//! - The fencing sequence `<schema>.fence` exists, or is created, and this
//!   user may take tokens from it. Creating it needs CREATE on the schema,
//!   and CREATE on the database only when the schema is missing too (a
//!   schema made in advance, say owned by the user, is used as it is). A
//!   missing privilege is a `Config` error naming it and the statement a
//!   DBA can run, such as `CREATE SCHEMA lockkit AUTHORIZATION app;`.
//! - On every lock session, the settings lockkit's statements rely on are
//!   made so, whatever the role or database sets (below).
//! - `fsync = off` on the server is let through with a warning in the log:
//!   after an operating-system crash or power loss such a server may hand
//!   out fencing tokens again. It is the server's choice, not a session's.
//!
//! # Role and database settings
//!
//! A role or database may set defaults (`ALTER ROLE app SET
//! statement_timeout = '1s'`) that would break a lock. On lockkit's own lock
//! sessions — the shared sessions and the waiter connections, where only
//! lockkit's statements run — at connect:
//!
//! - `statement_timeout`, `idle_session_timeout`,
//!   `idle_in_transaction_session_timeout` and `transaction_timeout` are
//!   switched off (those the server has): a statement timeout would cut a
//!   wait in the lock queue short, an idle timeout would end a session and
//!   every lock on it. Each wait carries its own `lock_timeout`, its
//!   deadline, so the role's `lock_timeout` never applies either;
//!   PostgreSQL's longest is 2,147,483,647 ms (about 24.8 days), so a longer
//!   wait is served as several.
//! - `synchronous_commit` becomes `on` where it is `off`: with it off, a
//!   server crash loses the last advances of the fencing sequence, and
//!   tokens already handed out would be handed out again.
//! - `search_path` becomes `pg_catalog, pg_temp`: a schema earlier in the role's path
//!   cannot stand in for the lock functions (`pg_try_advisory_lock`
//!   answering true) or their operators. lockkit's statements also name
//!   every function with its schema.
//!
//! In a locked transaction, the lock statement runs with `statement_timeout`
//! off and the user's statements with the role's settings, except that
//! `synchronous_commit` is `on` for the transaction if it was `off` (its
//! commit makes the fencing token durable). `idle_in_transaction_session_timeout`
//! stays the user's choice there (it ends the transaction, and the lock with
//! it). A statement cancelled anyway (SQLSTATE 57014) is `Unavailable`.
//!
//! # A server that stops answering
//!
//! A statement that answers at once — a try, a release, an extend's check —
//! is bounded by [`response_timeout`](PostgresOptions::response_timeout)
//! (default 5 s). Past it the server is taken for gone: that session's
//! connection is closed (the server frees its locks once it notices), every
//! lease on it turns Lost, and the next acquire connects a new session. So
//! a paused or unreachable server costs a release at most that long. A wait
//! in the server's queue is bounded by the acquire's own deadline (plus 1 s
//! for a silent server), and a wait with no deadline waits as long as it
//! takes; TCP keepalives notice a vanished network within about 11 s.
//!
//! # Close
//!
//! [`Locker::close`](lockkit_core::Locker::close) ends waiting acquires,
//! releases every held lease (each turns Lost), lets cancelled waits
//! withdraw from the server's queue, then closes every connection: the
//! server frees whatever they still held. Every later call fails with a
//! non-retryable `Unavailable`. A lease dropped anywhere — even on a thread
//! with no tokio runtime — is released on the runtime the client was used on.
//!
//! Sessions show in `pg_stat_activity` with `application_name` `lockkit`,
//! unless the URL names another.
//!
//! # The lock table
//!
//! The server keeps all locks in a shared table of about
//! `max_locks_per_transaction × (max_connections + max_prepared_transactions)`
//! entries (6,400 with the defaults of 64 × 100). Holding more locks at
//! once than that needs a larger `max_locks_per_transaction` (it takes a
//! restart). Running out is an `Unavailable` error naming the setting,
//! never a hang.
//!
//! # Reading a lock's holder
//!
//! `Locker::status` reads `pg_locks` for the name's key, whatever session
//! holds it (a `pg_advisory_lock` outside lockkit on the same key counts),
//! and names that session from `pg_stat_activity`: backend pid, user,
//! client address and application name, as far as this user may see them
//! (other roles' sessions show less without `pg_read_all_stats`). No
//! fencing token — the sequence is shared by every name — and no grant
//! time, which PostgreSQL does not keep.
//!
//! # Lock and work in one transaction
//!
//! [`PostgresBackend::transaction`] opens a transaction, takes
//! `pg_advisory_xact_lock` in it and hands you a [`LockedTransaction`] with
//! its fencing token: the lock and your writes commit or roll back together.
//! See `examples/postgres_billing.rs`.
//!
//! # Poolers
//!
//! Session locks need a session: point lockkit at PostgreSQL itself or at a
//! pooler in *session* mode. Behind a *transaction*-mode pooler (PgBouncer's
//! `pool_mode = transaction`) a lock is taken on whichever server
//! connection ran the statement; `extend` then finds it missing from
//! `pg_locks` and the lease turns Lost, but until then the lock protects
//! nothing. The transaction form ([`PostgresBackend::transaction`]) works
//! behind any pooler.
//!
//! # TLS
//!
//! TLS is rustls (feature `tls`, on by default), set by libpq's parameters
//! in the URL, in either of libpq's forms:
//!
//! | `sslmode` | lockkit connects | certificate checked |
//! |---|---|---|
//! | `disable`, `allow`, `prefer` (default) | without TLS | — |
//! | `require` | with TLS | chain and host name against the platform's roots; with `sslrootcert` naming a file, the chain against those roots (libpq's rule) |
//! | `verify-ca` | with TLS | chain against `sslrootcert`, which must name a file (the platform's roots sign any name); not the host name |
//! | `verify-full` | with TLS | chain against `sslrootcert` (default: the platform's roots) and the host name |
//!
//! `allow` and `prefer` connect without TLS: a connection that falls back
//! to plain text on any error protects nothing. `sslrootcert` names a PEM
//! file of trusted authorities (`system`: the platform's); `sslcert` and
//! `sslkey` name a client certificate chain and its key, both PEM. libpq's
//! default files under `~/.postgresql/` are not read; `sslpassword`,
//! `sslcrl`, `sslcrldir`, `sslsni` and `sslcompression` are refused with a
//! `Config` error naming them.
//!
//! # Connection strings
//!
//! Both of libpq's forms: `postgres://app:secret@db.internal:5432/app?sslmode=verify-full`
//! (or `postgresql://`; percent-encode `@`, `/`, `?`, `:` in a password)
//! and `host=db.internal port=5432 user=app password='se cret' dbname=app`.
//! A host list (`host=a,b`) is for failover between a primary and its
//! standbys, tried in order: every connection checks that it reached a
//! writable server, but list two independent primaries and the sessions
//! opened after the first fails reach the second, whose locks do not
//! exclude the first's.
//! A Unix socket is a host that is a path: `host=/var/run/postgresql`, or
//! `postgres://app@%2Fvar%2Frun%2Fpostgresql/app`. An error names the
//! parameter that is wrong, and never repeats a password: a parameter
//! neither lockkit nor the driver reads is refused by name, unless it
//! follows a password (then it is likely the rest of one, written with a
//! space or an `&`, and is not shown); an `@` the driver would split at
//! wrongly (a second one, or one inside the query) is refused, asking for
//! `%40`.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]
#![forbid(unsafe_code)]

mod backend;
mod connect;
mod conninfo;
mod error;
mod key;
mod options;
mod pool;
mod registry;
mod session;
mod tls;
mod transaction;
mod waiting;

pub use backend::PostgresBackend;
pub use key::lock_key;
pub use options::{PostgresConfig, PostgresOptions, MAX_SESSIONS};
/// The driver, re-exported: [`LockedTransaction::client`] hands out its `Client`.
pub use tokio_postgres;
pub use transaction::LockedTransaction;
