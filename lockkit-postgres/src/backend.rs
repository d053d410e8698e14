//! The PostgreSQL backend: session advisory locks multiplexed on a few
//! connections, waiting in the server's own queue.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lockkit_core::{
    AcquireRequest, Background, Capabilities, Claim, Error, ErrorKind, Expiry, Fairness,
    FencingGuarantee, FencingToken, Grant, GrantHandle, Holder, LeaseModel, LockBackend, LockName,
    LockStatus, OwnerToken, Result, SafetyClass, Undo, UndoStep, Wait, WaitMode, REPEAT_FOR,
};
use tracing::Instrument;

use crate::connect;
use crate::error::{from_postgres, BACKEND};
use crate::key::lock_key;
use crate::options::{PostgresConfig, PostgresOptions};
use crate::pool::{Pooled, SharedSession};
use crate::registry::Registry;
use crate::session::{Session, Target};
use crate::transaction::{LockedTransaction, Transactions};
use crate::waiting::{Around, Queue, Recheck, Waited};

/// A lock service on one PostgreSQL database.
///
/// Cheap to clone; clones share the connections and the table of held
/// locks. See the [crate documentation](crate) for what it promises.
#[derive(Clone)]
pub struct PostgresBackend {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    namespace: String,
    capabilities: Capabilities,
    /// The sessions try-acquires hold their locks on.
    shared: Vec<SharedSession>,
    next_shared: AtomicUsize,
    /// Acquires waiting in the server's queue, on connections of their own.
    queue: Queue,
    /// Connections running a [`LockedTransaction`].
    transactions: Arc<Transactions>,
    /// What this client holds or is trying to take, by key; and whether it
    /// was closed.
    registry: Registry,
    /// Where cancelled operations are undone.
    background: Background,
}

impl PostgresBackend {
    /// Connects to `url` (`postgres://user:password@host:port/database`)
    /// with the default [`PostgresOptions`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, PostgresOptions::new()).await
    }

    /// Connects to `url` with a configuration's namespace and
    /// `[postgres]` section, as the `lockkit` facade does; see
    /// [`connect_with`](Self::connect_with).
    pub async fn from_config(url: &str, namespace: &str, config: &PostgresConfig) -> Result<Self> {
        Self::connect_with(url, PostgresOptions::from_config(namespace, config)).await
    }

    /// Connects to `url` with `options`: opens the first shared session and
    /// creates the fencing sequence if it is missing.
    ///
    /// A malformed URL or bad option is a `Config` error naming it; a
    /// refused password or unknown database is `Config` too; an unreachable
    /// server is `Unavailable`.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self> {
        options.validate()?;
        let target = connect::target(url, &options)?;
        let shared = connect::shared_sessions(&target, options.sessions).await?;
        let mut capabilities = Capabilities::new(
            SafetyClass::Correctness,
            FencingGuarantee::Linearizable,
            LeaseModel::Session,
            WaitMode::ServerQueue,
            Fairness::Fifo,
        );
        // The TTL is not used: a lock lives as long as its session.
        capabilities.drift = Duration::ZERO;
        capabilities.status = true;
        let background = Background::new();
        let transactions =
            Transactions::new(target.clone(), options.max_transactions, background.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                target,
                namespace: options.namespace,
                capabilities,
                shared,
                next_shared: AtomicUsize::new(0),
                queue: Queue::new(options.max_waiters),
                transactions: Arc::new(transactions),
                registry: Registry::new(),
                background,
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
        self.begin_transaction(name, Some(wait)).await
    }

    /// Like [`transaction`](Self::transaction) but without waiting:
    /// `Ok(None)` if someone else holds `name` now.
    pub async fn try_transaction(&self, name: &str) -> Result<Option<LockedTransaction>> {
        match self.begin_transaction(name, None).await {
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
        shared + inner.queue.open() + inner.transactions.open()
    }

    /// Begins a locked transaction: the name validated as every acquire's
    /// is, in a `lockkit.acquire` span as every acquire is (`form =
    /// "transaction"`).
    async fn begin_transaction(
        &self,
        name: &str,
        wait: Option<Duration>,
    ) -> Result<LockedTransaction> {
        let lock = LockName::new(name)?;
        let key = self.key_of(name)?;
        let span = tracing::info_span!(
            "lockkit.acquire",
            backend = BACKEND,
            lock = name,
            form = "transaction",
            outcome = tracing::field::Empty,
            token = tracing::field::Empty,
            waited_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        let begun =
            LockedTransaction::begin(Arc::clone(&self.inner.transactions), &lock, key, wait)
                .instrument(span.clone())
                .await;
        let outcome = match &begun {
            Ok(transaction) => {
                span.record("token", transaction.fencing_token().get());
                "acquired"
            }
            Err(error) if error.kind() == ErrorKind::Contended => "contended",
            Err(error) if error.kind() == ErrorKind::Timeout => "timeout",
            Err(_) => "error",
        };
        span.record("outcome", outcome);
        span.record("waited_ms", started.elapsed().as_secs_f64() * 1e3);
        begun
    }
}

impl Inner {
    fn check_open(&self) -> Result<()> {
        if self.registry.is_closed() {
            return Err(self.target.closed());
        }
        Ok(())
    }

    /// Ends a grant here: forgets `owner`'s entry for `key` and gives its
    /// waiter connection, if it has one, back to the queue.
    fn finish(&self, key: i64, owner: &OwnerToken, handle: Option<&GrantHandle>) {
        drop(self.registry.forget(key, owner));
        if let Some(pooled) = handle.and_then(|handle| handle.get::<Hold>()?.take_waiter()) {
            self.queue.put(pooled);
        }
    }

    /// The next shared session, round robin.
    async fn shared_session(&self) -> Result<Arc<Session>> {
        let index = self.next_shared.fetch_add(1, Ordering::Relaxed) % self.shared.len();
        self.shared[index].get(&self.target).await
    }
}

/// What an unfinished acquire or release gives back: the backend's state,
/// the session the step reached, if it reached one, and the grant's handle
/// (a release's).
type Unfinished<'a> = (&'a Arc<Inner>, Option<Arc<Session>>, Option<GrantHandle>);

/// The undo of an acquire or release until it completes: unlocks `key` on
/// the session (a no-op if the session never got it), forgets `owner`'s
/// entry and gives back the grant's waiter connection, in the background.
/// Without a runtime the session's end is the backstop, and the entry
/// stays, so no try stacks on a session that may hold the key.
fn unfinished<'a>(
    inner: &'a Arc<Inner>,
    key: i64,
    owner: OwnerToken,
    session: Option<Arc<Session>>,
    handle: Option<GrantHandle>,
) -> Undo<'a, Unfinished<'a>, impl UndoStep<Unfinished<'a>>, impl FnOnce(Unfinished<'a>)> {
    Undo::new(
        &inner.background,
        (inner, session, handle),
        move |(inner, session, handle): Unfinished<'a>| {
            let inner = Arc::clone(inner);
            async move {
                if let Some(session) = session {
                    // Sent after the unfinished statement on the same
                    // connection, so it runs after it.
                    give_back(&session, key).await;
                }
                inner.finish(key, &owner, handle.as_ref());
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

/// A PostgreSQL grant's [`GrantHandle`], handed back at extend and
/// release: the key it holds, the session holding it and, for a lock
/// granted after waiting, the waiter connection that session runs on, to
/// give back to the queue at release.
struct Hold {
    key: i64,
    /// The owner it was granted to: a claim of another owner presenting
    /// this handle touches nothing.
    owner: OwnerToken,
    session: Arc<Session>,
    waiter: Mutex<Option<Pooled>>,
}

impl Hold {
    /// The waiter connection, once: whoever ends the grant gives it back.
    fn take_waiter(&self) -> Option<Pooled> {
        self.waiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// A grant of `key` with `token`, held by `session` (on `waiter`, for a
/// lock granted after waiting).
fn grant(
    key: i64,
    owner: OwnerToken,
    token: FencingToken,
    session: Arc<Session>,
    waiter: Option<Pooled>,
    contended: bool,
) -> Grant {
    Grant {
        contended,
        watches: vec![session.watch()],
        handle: Some(GrantHandle::new(Hold {
            key,
            owner,
            session,
            waiter: Mutex::new(waiter),
        })),
        ..Grant::new(token, None)
    }
}

impl PostgresBackend {
    /// Tries `key` on a shared session: a grant, or `None` if it is held.
    async fn try_shared(&self, key: i64, owner: OwnerToken, name: &str) -> Result<Option<Grant>> {
        let inner = &self.inner;
        // Cancelled before a session is reached: only the entry is forgotten.
        let reserved = unfinished(inner, key, owner, None, None);
        let session = inner.shared_session().await?;
        reserved.disarm();
        let unfinished = unfinished(inner, key, owner, Some(Arc::clone(&session)), None);
        let outcome = session.try_lock(key).await;
        let what = || format!("acquire `{name}`");
        match outcome {
            Ok(Some(token)) => {
                // Until both hold, the unfinished guard gives the lock back.
                let token = inner.target.token(token)?;
                if !inner.registry.place_shared(key, &owner, &session) {
                    return Err(inner.target.closed());
                }
                unfinished.disarm();
                Ok(Some(grant(key, owner, token, session, None, false)))
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

    /// Waits for `key` in the server's queue (see [`Queue::wait`]); a
    /// re-check on a shared session meanwhile may find it free. A lock the
    /// queue granted is recorded on its waiter connection.
    async fn wait_queued(
        &self,
        key: i64,
        owner: OwnerToken,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<Grant> {
        let inner = &self.inner;
        let around = Around {
            target: &inner.target,
            background: &inner.background,
            registry: &inner.registry,
        };
        let recheck = || async move {
            if !inner.registry.reserve(key, owner) {
                return Ok(Recheck::Skipped);
            }
            Ok(match self.try_shared(key, owner, name).await? {
                Some(grant) => Recheck::Granted(grant),
                None => Recheck::Held,
            })
        };
        let (token, pooled) = match inner
            .queue
            .wait(around, key, name, deadline, recheck)
            .await?
        {
            Waited::Rechecked(grant) => return Ok(grant),
            Waited::Queued { token, pooled } => (token, pooled),
        };
        let token = match inner.target.token(token) {
            Ok(token) => token,
            Err(error) => {
                give_back(&pooled.session, key).await;
                inner.queue.put(pooled);
                return Err(error);
            }
        };
        if !inner.registry.record_waited(key, owner, &pooled.session) {
            // Closed meanwhile: nobody will release it.
            pooled.session.end();
            return Err(inner.target.closed());
        }
        let session = Arc::clone(&pooled.session);
        Ok(grant(key, owner, token, session, Some(pooled), true))
    }
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
        if !queue_at_once && inner.registry.reserve(key, request.owner) {
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
                inner.finish(key, &claim.owner, claim.handle.as_ref());
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

    /// Held or free by `pg_locks`, for any session in this database (a
    /// lock taken with `pg_advisory_lock` outside lockkit, on the same key,
    /// counts too; one in another database is another lock); the holder is its session — backend pid, user, client
    /// address, application name, as far as this user may see them in
    /// `pg_stat_activity`. No token (the fencing sequence is shared by every
    /// name) and no grant time (PostgreSQL does not keep one).
    async fn status(&self, name: &LockName) -> Result<LockStatus> {
        let inner = &self.inner;
        inner.check_open()?;
        let key = self.key_of(name.as_str())?;
        let session = inner.shared_session().await?;
        let holder = session.holder(key).await.map_err(|error| {
            from_postgres(
                &inner.target.server,
                format!("read the holder of `{name}`"),
                error,
            )
        })?;
        Ok(match holder {
            Some(who) => {
                let mut holder = Holder::new(Expiry::Session);
                holder.holder = Some(who);
                LockStatus::Held(holder)
            }
            None => LockStatus::Free,
        })
    }

    /// `SHOW server_version`.
    async fn server_version(&self) -> Result<String> {
        let inner = &self.inner;
        inner.check_open()?;
        let session = inner.shared_session().await?;
        session
            .server_version()
            .await
            .map_err(|error| from_postgres(&inner.target.server, "SHOW server_version", error))
    }

    async fn release(&self, claim: &Claim) -> Result<()> {
        let inner = &self.inner;
        let name = claim.name.as_str();
        let (key, session) = self.holding(claim, "release")?;
        let unfinished = unfinished(
            inner,
            key,
            claim.owner,
            Some(Arc::clone(&session)),
            claim.handle.clone(),
        );
        let outcome = session.unlock(key).await;
        match outcome {
            Ok(held) => {
                unfinished.disarm();
                inner.finish(key, &claim.owner, claim.handle.as_ref());
                if held {
                    Ok(())
                } else {
                    Err(not_held(name, "release", "its session no longer held it"))
                }
            }
            Err(_) if !session.is_alive() => {
                unfinished.disarm();
                inner.finish(key, &claim.owner, claim.handle.as_ref());
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
        inner.transactions.refuse();
        inner.queue.end_waits();
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
        inner.queue.close();
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
    /// or `NotHeld`, having given back the grant's waiter connection.
    fn holding(&self, claim: &Claim, action: &str) -> Result<(i64, Arc<Session>)> {
        let inner = &self.inner;
        let name = claim.name.as_str();
        let Some(hold) = claim
            .handle::<Hold>()
            .filter(|hold| hold.owner == claim.owner)
        else {
            return Err(not_held(
                name,
                action,
                "the claim carries no grant of this PostgreSQL backend to its owner",
            ));
        };
        let standing = inner.registry.table().get(&hold.key).and_then(|entries| {
            entries
                .iter()
                .find(|held| held.owner == claim.owner)
                .map(|held| {
                    held.session()
                        .is_some_and(|on| Arc::ptr_eq(on, &hold.session))
                })
        });
        let why = match standing {
            Some(true) if hold.session.is_alive() => {
                return Ok((hold.key, Arc::clone(&hold.session)))
            }
            Some(true) => "it was lost with its session's connection",
            Some(false) => "it was never granted",
            None if inner.check_open().is_err() => {
                "the backend was closed, which ended its sessions and their locks"
            }
            None => "this client does not hold it for that owner",
        };
        if standing == Some(true) {
            drop(inner.registry.forget(hold.key, &claim.owner));
        }
        if let Some(pooled) = hold.take_waiter() {
            // The grant is over; a connection still alive is not reused, in
            // case it kept the key.
            pooled.session.end();
            inner.queue.put(pooled);
        }
        Err(not_held(name, action, why))
    }
}

fn not_held(name: &str, action: &str, why: &str) -> Error {
    Error::not_held(BACKEND, action, name, why)
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
