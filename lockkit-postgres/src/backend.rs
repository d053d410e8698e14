//! The PostgreSQL backend: session advisory locks multiplexed on a few
//! connections, waiting in the server's own queue.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lockkit_core::{
    AcquireRequest, Background, Capabilities, Claim, Error, ErrorKind, Fairness, FencingGuarantee,
    FencingToken, Grant, GrantHandle, LeaseModel, LockBackend, OwnerToken, Result, SafetyClass,
    Undo, UndoStep, Wait, WaitMode, REPEAT_FOR,
};

use crate::error::{from_postgres, is_lock_timeout, BACKEND};
use crate::key::lock_key;
use crate::options::PostgresOptions;
use crate::pool::{Pool, Pooled, SharedSession};
use crate::registry::{Held, Place, Registry};
use crate::session::{Purpose, Session, Target};
use crate::transaction::LockedTransaction;

/// How long past an acquire's deadline the client waits for the server to
/// report its own `lock_timeout`, before giving up on a silent server.
const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// While every waiter connection is busy, a waiting acquire re-checks the
/// lock without one (a try needs none) after this pause, doubling up to
/// [`LAST_RECHECK`]: a client-side limit must never keep a free lock from
/// being granted.
const FIRST_RECHECK: Duration = Duration::from_millis(10);

/// The longest pause between those re-checks.
const LAST_RECHECK: Duration = Duration::from_millis(200);

/// A lock service on one PostgreSQL database.
///
/// Cheap to clone; clones share the connections and the table of held
/// locks. See the [crate documentation](crate) for what it promises.
#[derive(Clone)]
pub struct PostgresBackend {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) target: Target,
    namespace: String,
    capabilities: Capabilities,
    /// The sessions try-acquires hold their locks on.
    shared: Vec<SharedSession>,
    next_shared: AtomicUsize,
    /// Connections blocked in `pg_advisory_lock`, then holding what they got.
    waiters: Pool,
    /// Connections running a [`LockedTransaction`].
    pub(crate) transactions: Pool,
    /// What this client holds or is trying to take, by key; and whether it
    /// was closed.
    registry: Registry,
    /// Turns true at close: ends acquires waiting in the server's queue.
    closing: tokio::sync::watch::Sender<bool>,
    /// Where cancelled operations are undone.
    pub(crate) background: Background,
    /// `max_waiters`, for messages.
    max_waiters: usize,
}

impl PostgresBackend {
    /// Connects to `url` (`postgres://user:password@host:port/database`)
    /// with the default [`PostgresOptions`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, PostgresOptions::new()).await
    }

    /// Connects to `url` with `options`: opens the first shared session and
    /// creates the fencing sequence if it is missing.
    ///
    /// A malformed URL or bad option is a `Config` error naming it; a
    /// refused password or unknown database is `Config` too; an unreachable
    /// server is `Unavailable`.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self> {
        options.validate()?;
        let target = target(url, &options)?;
        // The first session sets the schema up; the others connect together
        // after it, now rather than at their first use, where the connection
        // would add its tens of milliseconds to an acquire.
        let first = Session::connect_setup(&target).await?;
        let mut others = tokio::task::JoinSet::new();
        for _ in 1..options.sessions {
            let target = target.clone();
            others.spawn(async move { Session::connect(&target, Purpose::Locks).await });
        }
        let mut shared = vec![SharedSession::new(Some(first))];
        while let Some(joined) = others.join_next().await {
            let session = joined.map_err(|error| {
                Error::new(
                    ErrorKind::Backend,
                    BACKEND,
                    format!("connecting a shared session failed: {error}"),
                )
            })??;
            shared.push(SharedSession::new(Some(session)));
        }
        let mut capabilities = Capabilities::new(
            SafetyClass::Correctness,
            FencingGuarantee::Linearizable,
            LeaseModel::Session,
            WaitMode::ServerQueue,
            Fairness::Fifo,
        );
        // The TTL is not used: a lock lives as long as its session.
        capabilities.drift = Duration::ZERO;
        Ok(Self {
            inner: Arc::new(Inner {
                target,
                namespace: options.namespace,
                capabilities,
                shared,
                next_shared: AtomicUsize::new(0),
                waiters: Pool::new(options.max_waiters, "waiter", Purpose::Locks),
                transactions: Pool::new(
                    options.max_transactions,
                    "transaction",
                    Purpose::Transactions,
                ),
                registry: Registry::new(),
                closing: tokio::sync::watch::Sender::new(false),
                background: Background::new(),
                max_waiters: options.max_waiters,
            }),
        })
    }

    /// The advisory lock key of `name` in this backend's namespace (see
    /// [`lock_key`](crate::lock_key)), to find it in `pg_locks` or take it
    /// from SQL. `InvalidInput` for an explicit key not in its one spelling.
    pub fn key_of(&self, name: &str) -> Result<i64> {
        lock_key(&self.inner.namespace, name)
    }

    /// Opens a transaction holding `name` by `pg_advisory_xact_lock`,
    /// waiting up to `wait` for it (then `Timeout`). The lock and the
    /// transaction's writes commit or roll back together.
    pub async fn transaction(&self, name: &str, wait: Duration) -> Result<LockedTransaction> {
        LockedTransaction::begin(
            Arc::clone(&self.inner),
            name,
            self.key_of(name)?,
            Some(wait),
        )
        .await
    }

    /// Like [`transaction`](Self::transaction) but without waiting:
    /// `Ok(None)` if someone else holds `name` now.
    pub async fn try_transaction(&self, name: &str) -> Result<Option<LockedTransaction>> {
        let begun =
            LockedTransaction::begin(Arc::clone(&self.inner), name, self.key_of(name)?, None).await;
        match begun {
            Ok(transaction) => Ok(Some(transaction)),
            Err(error) if error.kind() == ErrorKind::Contended => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// How many connections are open now: shared sessions, waiters and
    /// open transactions.
    pub fn connections(&self) -> usize {
        let inner = &self.inner;
        let shared = inner
            .shared
            .iter()
            .filter(|shared| shared.is_connected())
            .count();
        shared + inner.waiters.open() + inner.transactions.open()
    }
}

impl Inner {
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.registry.is_closed() {
            return Err(self.closed_error());
        }
        Ok(())
    }

    fn closed_error(&self) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            BACKEND,
            format!("{}: the backend was closed", self.target.server),
        )
        .with_retryable(false)
    }

    /// Gives back what a removed entry occupied.
    fn settle(&self, held: Option<Held>) {
        if let Some(Held {
            place: Place::Waited(pooled),
            ..
        }) = held
        {
            self.waiters.put(pooled);
        }
    }

    /// Reserves `key` for `owner`'s try (see [`Registry::reserve`]), giving
    /// back what entries of dead sessions occupied.
    fn reserve(&self, key: i64, owner: OwnerToken) -> bool {
        let (free, dead) = self.registry.reserve(key, owner);
        for held in dead {
            self.settle(Some(held));
        }
        free
    }

    /// The next shared session, round robin.
    async fn shared_session(&self) -> Result<Arc<Session>> {
        let index = self.next_shared.fetch_add(1, Ordering::Relaxed) % self.shared.len();
        self.shared[index].get(&self.target).await
    }

    /// A fencing token from the sequence's value.
    pub(crate) fn token(&self, value: i64) -> Result<FencingToken> {
        u64::try_from(value)
            .ok()
            .and_then(FencingToken::new)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Backend,
                    BACKEND,
                    format!(
                        "{}: the fencing sequence {}.fence returned {value}; it must never be reset or lowered",
                        self.target.server, self.target.schema
                    ),
                )
            })
    }
}

/// What an unfinished acquire or release gives back: the backend's state,
/// and the session the step reached, if it reached one.
type Unfinished<'a> = (&'a Arc<Inner>, Option<Arc<Session>>);

/// The undo of an acquire or release until it completes: unlocks `key` on
/// the session (a no-op if the session never got it) and forgets `owner`'s
/// entry, in the background. Without a runtime the session's end is the
/// backstop, and the entry stays, so no try stacks on a session that may
/// hold the key.
fn unfinished<'a>(
    inner: &'a Arc<Inner>,
    key: i64,
    owner: OwnerToken,
    session: Option<Arc<Session>>,
) -> Undo<'a, Unfinished<'a>, impl UndoStep<Unfinished<'a>>, impl FnOnce(Unfinished<'a>)> {
    Undo::new(
        &inner.background,
        (inner, session),
        move |(inner, session): Unfinished<'a>| {
            let inner = Arc::clone(inner);
            async move {
                if let Some(session) = session {
                    // Sent after the unfinished statement on the same
                    // connection, so it runs after it.
                    give_back(&session, key).await;
                }
                let held = inner.registry.forget(key, &owner);
                inner.settle(held);
            }
        },
        |_| {
            tracing::warn!(
                backend = BACKEND,
                "an operation was cancelled where no runtime is reachable; \
                 its lock lapses with its session"
            );
        },
    )
}

/// Unlocks `key` on `session`. If that fails while the connection lives,
/// the session is ended instead — its connection closes and the server
/// frees every lock it held — so the client never forgets a key the
/// session might still hold (a later try there would stack on it).
async fn give_back(session: &Session, key: i64) {
    if let Err(error) = session.unlock(key).await {
        if session.is_alive() {
            tracing::warn!(%error, "unlock failed on a live session; ending the session instead");
            session.end();
        }
    }
}

/// A PostgreSQL grant's [`GrantHandle`]: the key it holds and the session
/// holding it, handed back at extend and release.
struct Hold {
    key: i64,
    session: Arc<Session>,
}

impl PostgresBackend {
    fn grant(
        &self,
        key: i64,
        token: i64,
        session: &Arc<Session>,
        contended: bool,
    ) -> Result<Grant> {
        Ok(Grant {
            contended,
            watches: vec![session.watch()],
            handle: Some(GrantHandle::new(Hold {
                key,
                session: Arc::clone(session),
            })),
            ..Grant::new(self.inner.token(token)?, None)
        })
    }

    /// Tries `key` on a shared session: a grant, or `None` if it is held.
    async fn try_shared(&self, key: i64, owner: OwnerToken, name: &str) -> Result<Option<Grant>> {
        let inner = &self.inner;
        // Cancelled before a session is reached: only the entry is forgotten.
        let reserved = unfinished(inner, key, owner, None);
        let session = inner.shared_session().await?;
        reserved.disarm();
        let unfinished = unfinished(inner, key, owner, Some(Arc::clone(&session)));
        let outcome = session.try_lock(key).await;
        let what = || format!("acquire `{name}`");
        match outcome {
            Ok(Some(token)) => {
                // Until both hold, the unfinished guard gives the lock back.
                let grant = self.grant(key, token, &session, false)?;
                if !inner.registry.place_shared(key, &owner, &session) {
                    return Err(inner.closed_error());
                }
                unfinished.disarm();
                Ok(Some(grant))
            }
            Ok(None) => {
                unfinished.disarm();
                drop(inner.registry.forget(key, &owner));
                Ok(None)
            }
            Err(error) => {
                // The lock may have been granted before the statement failed
                // (the token after it): give it back before answering, so a
                // retry finds it free. A lost connection took it already.
                if session.is_alive() {
                    give_back(&session, key).await;
                }
                unfinished.disarm();
                drop(inner.registry.forget(key, &owner));
                Err(from_postgres(&inner.target.server, what(), error))
            }
        }
    }

    /// Waits for `key` in the server's queue on a waiter connection.
    ///
    /// While every waiter connection is busy it keeps its place in line for
    /// one and meanwhile checks, without one, whether the lock came free —
    /// a client-side limit never looks like contention and never keeps a
    /// free lock from being granted. Closing the backend ends the wait.
    async fn wait_queued(
        &self,
        key: i64,
        owner: OwnerToken,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<Grant> {
        let inner = &self.inner;
        let timeout = || {
            Error::timeout(BACKEND, "acquire", name, "its holder kept it").at(&inner.target.server)
        };
        let mut closing = inner.closing.subscribe();
        let closed = async move {
            let _ = closing.wait_for(|closed| *closed).await;
        };
        tokio::pin!(closed);
        // Created once: it keeps this acquire's place in the FIFO line for a
        // waiter connection across the re-checks.
        let slot = inner.waiters.slot(&inner.target);
        tokio::pin!(slot);
        let mut rechecks = 0;
        let mut pause = FIRST_RECHECK;
        let slot = loop {
            let until = Instant::now() + pause;
            let wake = deadline.map_or(until, |deadline| deadline.min(until));
            tokio::select! {
                biased;
                slot = &mut slot => break slot?,
                () = &mut closed => return Err(inner.closed_error()),
                () = tokio::time::sleep_until(wake.into()) => {}
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Err(self.no_waiter_connection(key, name, rechecks));
            }
            // A try needs no waiter connection.
            if inner.reserve(key, owner) {
                rechecks += 1;
                if let Some(grant) = self.try_shared(key, owner, name).await? {
                    return Ok(grant);
                }
            }
            pause = (pause * 2).min(LAST_RECHECK);
        };
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(timeout());
        }
        let fill = inner.waiters.fill(slot, &inner.target);
        let pooled = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), fill)
                .await
                .map_err(|_| {
                    Error::new(
                        ErrorKind::Timeout,
                        BACKEND,
                        format!(
                            "{}: opening a waiter connection for lock `{name}` took past the \
                             acquire's deadline (the lock was never waited for)",
                            inner.target.server
                        ),
                    )
                })??,
            None => fill.await?,
        };
        let mut pooled = pooled;
        loop {
            let left = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
            if left.is_some_and(|left| left < Duration::from_millis(1)) {
                inner.waiters.put(pooled);
                return Err(timeout());
            }
            // Until the outcome is in hand, a cancelled acquire (or a silent
            // server past the deadline, or close) withdraws from the queue in
            // the background.
            let session = Arc::clone(&pooled.session);
            let waiting = withdraw(inner, key, pooled);
            let lock = session.lock(key, left);
            let give_up = deadline.and_then(|deadline| deadline.checked_add(DEADLINE_GRACE));
            let silent = async {
                match give_up {
                    Some(give_up) => tokio::time::sleep_until(give_up.into()).await,
                    None => std::future::pending().await,
                }
            };
            let outcome = tokio::select! {
                outcome = lock => outcome,
                () = silent => return Err(timeout()),
                () = &mut closed => return Err(inner.closed_error()),
            };
            pooled = waiting.disarm().1;
            match outcome {
                Ok(token) => {
                    let grant = match self.grant(key, token, &pooled.session, true) {
                        Ok(grant) => grant,
                        Err(error) => {
                            give_back(&pooled.session, key).await;
                            inner.waiters.put(pooled);
                            return Err(error);
                        }
                    };
                    if let Some(pooled) = inner.registry.record_waited(key, owner, pooled) {
                        // Closed meanwhile: nobody will release it.
                        pooled.session.end();
                        return Err(inner.closed_error());
                    }
                    return Ok(grant);
                }
                Err(error) if is_lock_timeout(&error) => {
                    // PostgreSQL can report lock_timeout for a lock it
                    // granted in the same instant (DistributedLock met
                    // this): make sure the connection does not keep the key
                    // before reusing it, or the next wait on it would stack
                    // on a lock nobody owns.
                    match pooled.session.unlock(key).await {
                        Ok(true) => {
                            tracing::debug!(
                                lock = name,
                                "lock_timeout reported for a granted lock; released it"
                            );
                        }
                        Ok(false) => {}
                        Err(_) => {
                            pooled.session.end();
                            return Err(timeout());
                        }
                    }
                    // lock_timeout stops at about 24.8 days
                    // (MAX_LOCK_TIMEOUT): a longer wait goes on; the loop's
                    // first check ends it at the deadline.
                }
                Err(error) => {
                    // Not sure what the connection holds: drop it, and any lock with it.
                    pooled.session.end();
                    return Err(from_postgres(
                        &inner.target.server,
                        format!("wait for `{name}`"),
                        error,
                    ));
                }
            }
        }
    }

    /// The deadline passed while every waiter connection was busy: say
    /// which limit was in the way, and what the re-checks saw.
    fn no_waiter_connection(&self, key: i64, name: &str, rechecks: usize) -> Error {
        let inner = &self.inner;
        let seen = match rechecks {
            _ if inner.registry.holds_live(key) => {
                "this client itself holds it, for another of its leases".to_owned()
            }
            0 => "the deadline came before any re-check".to_owned(),
            checks => format!("it was held at each of {checks} re-checks without one"),
        };
        Error::new(
            ErrorKind::Timeout,
            BACKEND,
            format!(
                "{}: lock `{name}` was not granted by the acquire's deadline ({seen}). It never \
                 got a waiter connection: all max_waiters = {} were busy, {} of them holding a \
                 lock granted after waiting (such a lock keeps its connection until released). \
                 Raise [postgres] max_waiters, or release those locks sooner",
                inner.target.server,
                inner.max_waiters,
                inner.registry.pinned_waiters(),
            ),
        )
    }
}

/// A wait in the server's queue: the backend's state and its connection.
type Waiting = (Arc<Inner>, Pooled);

/// The undo of a wait in the server's queue until its outcome is in hand
/// (a cancelled acquire, a silent server past the deadline, close): cancels
/// the wait and unlocks what it may have been granted meanwhile, then ends
/// the waiter connection. Without a runtime, ending the connection ends the
/// wait and any grant.
fn withdraw(
    inner: &Arc<Inner>,
    key: i64,
    pooled: Pooled,
) -> Undo<'_, Waiting, impl UndoStep<Waiting>, impl FnOnce(Waiting)> {
    Undo::new(
        &inner.background,
        (Arc::clone(inner), pooled),
        move |(inner, pooled): Waiting| {
            async move {
                let session = Arc::clone(&pooled.session);
                // Queued behind the wait on the same connection, the unlock runs
                // once the wait ends, granted or cancelled.
                let unlock = session.unlock(key);
                tokio::pin!(unlock);
                // A cancel that reached the server before the wait began is
                // lost: ask again until the wait has ended, for a bounded time.
                let give_up = Instant::now() + REPEAT_FOR;
                loop {
                    session.cancel(inner.target.tls.clone()).await;
                    tokio::select! {
                        _ = &mut unlock => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    if Instant::now() >= give_up {
                        tracing::warn!(
                            lock_key = key,
                            "a cancelled wait did not end; closing its connection"
                        );
                        break;
                    }
                }
                // Never reused: a cancel request reaches the server on its own
                // connection, and one that arrives late would cancel whatever
                // runs next on this one — another acquire's wait, or a release.
                // Ending the connection also frees the lock if the unlock failed.
                pooled.session.end();
            }
        },
        |(_, pooled): Waiting| pooled.session.end(),
    )
}

#[async_trait]
impl LockBackend for PostgresBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    /// # Cancel safety
    ///
    /// Dropping the future at any await leaves no lock held: an [`Undo`]
    /// unlocks a try that may have been granted on a shared session, and a
    /// wait in the server's queue is cancelled, whatever it was granted
    /// meanwhile unlocked, and its connection closed — in the background.
    /// Where no runtime is reachable, the connection closes (the server
    /// frees its locks) or the lock lapses with its shared session.
    async fn acquire(&self, request: AcquireRequest) -> Result<Grant> {
        let inner = &self.inner;
        inner.check_open()?;
        let name = request.name.as_str();
        let key = self.key_of(name)?;
        // A waiting acquire of a name found held a moment ago joins the
        // queue at once; otherwise a try on a shared session comes first,
        // and the lock stays there if it was free.
        let queue_at_once = request.wait != Wait::No && inner.registry.recently_contended(key);
        if !queue_at_once && inner.reserve(key, request.owner) {
            if let Some(grant) = self.try_shared(key, request.owner, name).await? {
                return Ok(grant);
            }
            inner.registry.note_contended(key);
        }
        match request.wait {
            Wait::No => Err(
                Error::contended(BACKEND, "acquire", name, "another session holds it")
                    .at(&inner.target.server),
            ),
            Wait::Until(deadline) => {
                self.wait_queued(key, request.owner, name, Some(deadline))
                    .await
            }
            Wait::Forever => self.wait_queued(key, request.owner, name, None).await,
        }
    }

    async fn extend(&self, claim: &Claim, _ttl: Duration) -> Result<Option<Instant>> {
        let inner = &self.inner;
        let name = claim.name.as_str();
        let (key, session) = self.holding(claim, "extend")?;
        let what = || format!("extend `{name}`");
        match session.holds(key).await {
            Ok(true) => Ok(None),
            Ok(false) => {
                let held = inner.registry.forget(key, &claim.owner);
                inner.settle(held);
                Err(not_held(name, "extend", "its session no longer holds it"))
            }
            Err(_) if !session.is_alive() => Err(not_held(
                name,
                "extend",
                "its session's connection was lost",
            )),
            Err(error) => Err(from_postgres(&inner.target.server, what(), error)),
        }
    }

    async fn release(&self, claim: &Claim) -> Result<()> {
        let inner = &self.inner;
        let name = claim.name.as_str();
        let (key, session) = self.holding(claim, "release")?;
        let unfinished = unfinished(inner, key, claim.owner, Some(Arc::clone(&session)));
        let outcome = session.unlock(key).await;
        match outcome {
            Ok(held) => {
                unfinished.disarm();
                let entry = inner.registry.forget(key, &claim.owner);
                inner.settle(entry);
                if held {
                    Ok(())
                } else {
                    Err(not_held(name, "release", "its session no longer held it"))
                }
            }
            Err(_) if !session.is_alive() => {
                unfinished.disarm();
                drop(inner.registry.forget(key, &claim.owner));
                Err(not_held(
                    name,
                    "release",
                    "its session's connection was lost",
                ))
            }
            Err(error) => {
                // Unknown outcome: leave it to the background give-back, and
                // say not to repeat it — the entry stays until that is done,
                // and PostgreSQL's unlock is not owner-checked at the server.
                drop(unfinished);
                Err(
                    from_postgres(&inner.target.server, format!("release `{name}`"), error)
                        .with_retryable(false),
                )
            }
        }
    }

    /// Refuses every later call, lets cancelled waits withdraw from the
    /// server's queue (for up to [`REPEAT_FOR`]), then closes every
    /// connection: the server frees whatever locks they still hold.
    async fn close(&self) -> Result<()> {
        let inner = &self.inner;
        inner.registry.close();
        inner.closing.send_replace(true);
        // Let the waits just woken hand their withdrawal to the background.
        tokio::task::yield_now().await;
        if !inner.background.settle(REPEAT_FOR).await {
            tracing::warn!(
                server = inner.target.server,
                "close: cancelled waits still withdrawing; closing their connections"
            );
        }
        for shared in &inner.shared {
            shared.close();
        }
        inner.waiters.close();
        inner.transactions.close();
        let held = std::mem::take(&mut *inner.registry.table());
        for entry in held.into_values().flatten() {
            if let Some(session) = entry.session() {
                session.end();
            }
        }
        Ok(())
    }
}

impl PostgresBackend {
    /// The key and live session of `claim`'s grant, from its handle, once
    /// the registry confirms the grant still stands there (released, the
    /// entry is gone, and the session may hold the key for a newer owner);
    /// or `NotHeld`.
    fn holding(&self, claim: &Claim, action: &str) -> Result<(i64, Arc<Session>)> {
        let inner = &self.inner;
        let name = claim.name.as_str();
        let Some(&Hold { key, ref session }) = claim.handle::<Hold>() else {
            return Err(not_held(
                name,
                action,
                "the claim carries no grant of this PostgreSQL backend",
            ));
        };
        let table = inner.registry.table();
        let entry = table
            .get(&key)
            .and_then(|entries| entries.iter().find(|held| held.owner == claim.owner));
        let alive = match entry {
            Some(held) => match held.session() {
                Some(holder) if Arc::ptr_eq(holder, session) => session.is_alive(),
                _ => return Err(not_held(name, action, "it was never granted")),
            },
            None if inner.check_open().is_err() => {
                return Err(not_held(
                    name,
                    action,
                    "the backend was closed, which ended its sessions and their locks",
                ))
            }
            None => {
                return Err(not_held(
                    name,
                    action,
                    "this client does not hold it for that owner",
                ))
            }
        };
        drop(table);
        if !alive {
            let held = inner.registry.forget(key, &claim.owner);
            inner.settle(held);
            return Err(not_held(
                name,
                action,
                "it was lost with its session's connection",
            ));
        }
        Ok((key, Arc::clone(session)))
    }
}

fn not_held(name: &str, action: &str, why: &str) -> Error {
    Error::not_held(BACKEND, action, name, why)
}

/// Parses the URL and applies the options: the connection target.
fn target(url: &str, options: &PostgresOptions) -> Result<Target> {
    let conninfo = crate::conninfo::ConnInfo::parse(url)?;
    let mut config = tokio_postgres::Config::from_str(&conninfo.driver).map_err(|error| {
        // The driver's message names the parameter; its Display alone
        // says only "invalid connection string".
        let why = std::error::Error::source(&error)
            .map_or_else(|| error.to_string(), |cause| format!("{error}: {cause}"));
        Error::new(
            ErrorKind::Config,
            BACKEND,
            format!(
                "url: {why}; expected postgres://[user[:password]@]host[:port][/database][?param=value&…] \
                 or libpq's keyword form `host=… port=… user=… dbname=…`"
            ),
        )
        .with_source(error)
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    // Notice a vanished server or network within seconds, not hours: the
    // leases on a dead connection must turn Lost.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(10));
    // The URL's own application_name wins; otherwise sessions show as lockkit's.
    if config.get_application_name().is_none() {
        config.application_name("lockkit");
    }
    let server = server_of(&config);
    let tls = crate::tls::connector(&mut config, &conninfo.tls, &server)?;
    Ok(Target {
        config,
        tls,
        server,
        schema: options.schema.clone(),
        response_timeout: options.response_timeout,
        connections: options.sessions + options.max_waiters + options.max_transactions,
    })
}

/// `host:port` of the first host, for messages.
fn server_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("server", &self.inner.target.server)
            .field("namespace", &self.inner.namespace)
            .field("schema", &self.inner.target.schema)
            .finish_non_exhaustive()
    }
}
