//! The etcd backend: the lock recipe of etcd's `concurrency.Mutex`, done
//! client-side on one session lease and one delete watch.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::Retryable;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};
use lockkit_core::{
    repeat, AcquireRequest, Background, Capabilities, Claim, Error, ErrorKind, Expiry, Fairness,
    FencingGuarantee, FencingToken, Grant, GrantHandle, Holder, LeaseModel, LockBackend, LockName,
    LockStatus, OwnerToken, Result, SafetyClass, SessionSignal, Undo, UndoStep, Wait, WaitMode,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::affinity::Affinity;
use crate::deletions::{Deletions, Granted, Narrowed, Place};
use crate::error::{from_etcd, is_lease_gone, no_answer, BACKEND};
use crate::keys::{lock_key, namespace_prefix, queue_prefix};
use crate::options::{EtcdConfig, EtcdOptions};
use crate::request;
use crate::session::Session;
use crate::url::{self, Cluster};

/// How many times an acquire starts over when its key vanished under it
/// (its session lease ended, or someone deleted it) before it reports so.
const ATTEMPTS: usize = 3;

/// A lock service on one etcd cluster.
///
/// Cheap to clone; clones share the connection, the session lease and the
/// delete watch. See the [crate documentation](crate) for what it promises.
#[derive(Clone)]
pub struct EtcdBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    affinity: Arc<Affinity>,
    cluster: Cluster,
    namespace: String,
    options: EtcdOptions,
    capabilities: Capabilities,
    /// The session lease every lock is attached to, replaced when it ends.
    session: Mutex<Option<Arc<Session>>>,
    granting: tokio::sync::Mutex<()>,
    deletions: Deletions,
    /// One permit per name: at most one key of this client in a name's
    /// queue, as `concurrency.Mutex` has one per session.
    gates: Mutex<HashMap<String, Gate>>,
    background: Background,
    closed: AtomicBool,
}

impl fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("cluster", &self.inner.cluster)
            .field("namespace", &self.inner.namespace)
            .field("held", &self.inner.deletions.held())
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    /// The last clone of the backend is gone, and with it every lease on
    /// it: stop keeping the session lease alive (the server expires it, and
    /// any key left on it, within its TTL). `close` revokes it at once.
    fn drop(&mut self) {
        if let Some(session) = self
            .session
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            session.end();
        }
    }
}

/// The gate of one name: one permit, so one owner of this client at a time
/// has a key in the name's queue.
#[derive(Clone)]
struct Gate {
    permits: Arc<Semaphore>,
    /// The permit is held by a withdrawal, not by an owner.
    withdrawing: Arc<AtomicBool>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(1)),
            withdrawing: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// An etcd grant's [`GrantHandle`]: the key, its create revision (the
/// fencing token), the owner, and the session lease it lives on.
struct Held {
    key: String,
    revision: i64,
    owner: OwnerToken,
    session: Arc<Session>,
    /// The grant's own signal (it ends when the key is seen deleted), kept
    /// here too: the backend forgets the key at release, before the lease
    /// records Released, and must not end the signal on the way.
    _signal: Arc<SessionSignal>,
}

impl EtcdBackend {
    /// Connects to `url` (`etcd://host:2379,host:22379,host:32379`) with
    /// the default [`EtcdOptions`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, EtcdOptions::new()).await
    }

    /// Connects to `url` with a configuration's namespace and `[etcd]`
    /// section, as the `lockkit` facade does; see [`connect_with`](Self::connect_with).
    pub async fn from_config(url: &str, namespace: &str, config: &EtcdConfig) -> Result<Self> {
        Self::connect_with(url, EtcdOptions::from_config(namespace, config)).await
    }

    /// Connects to `url` with `options`: grants the session lease and opens
    /// the delete watch, both before it returns.
    ///
    /// A malformed URL or bad option is a `Config` error naming it, and so
    /// is a refused user or password; no member answering is `Unavailable`.
    pub async fn connect_with(url: &str, options: EtcdOptions) -> Result<Self> {
        options.validate()?;
        let cluster = url::parse(url)?;
        let servers = cluster.servers();
        // `require_leader`: a member cut off from the leader fails requests
        // and cancels watches at once, rather than answer from a store that
        // no longer moves (etcd's `hasleader` metadata).
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_keep_alive_while_idle(false)
            .with_require_leader(true);
        if let Some((user, password)) = &cluster.user {
            connect = connect
                .with_user(user, password)
                .with_auto_token_refresh(true);
        }
        let what = "connect";
        let client = tokio::time::timeout(
            options.connect_timeout + options.response_timeout,
            Client::connect(cluster.endpoints(), Some(connect)),
        )
        .await
        .map_err(|_| no_answer(what, options.connect_timeout).at(&servers))?
        .map_err(|error| from_etcd(what, error).at(&servers))?;
        let affinity = Arc::new(if options.prefer_leader {
            Affinity::pin_leader(&client, cluster.endpoints(), options.response_timeout).await
        } else {
            Affinity::spread_over(&client, cluster.endpoints())
        });
        let session = Session::grant(
            &client,
            &affinity,
            options.session_ttl,
            options.response_timeout,
        )
        .await
        .map_err(|error| error.at(&servers))?;
        let deletions = match Deletions::start(
            &client,
            &affinity,
            namespace_prefix(&options.namespace),
            options.session_ttl / 3,
            options.response_timeout,
        )
        .await
        {
            Ok(deletions) => deletions,
            Err(error) => {
                // No backend will use the lease: give it back.
                let _ = session
                    .close(&client, &affinity, options.response_timeout)
                    .await;
                return Err(error.at(&servers));
            }
        };
        let mut capabilities = Capabilities::new(
            SafetyClass::Correctness,
            FencingGuarantee::Linearizable,
            LeaseModel::Session,
            WaitMode::Notify,
            Fairness::Fifo,
        );
        capabilities.drift = lockkit_core::session_drift(options.session_ttl);
        capabilities.session_timeout = true;
        capabilities.status = true;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                affinity,
                cluster,
                namespace: options.namespace.clone(),
                options,
                capabilities,
                session: Mutex::new(Some(session)),
                granting: tokio::sync::Mutex::new(()),
                deletions,
                gates: Mutex::new(HashMap::new()),
                background: Background::new(),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// The key a lock of `name` held by this client has now: the queue
    /// prefix `<namespace>/<name>/` and the session lease in hex.
    pub fn key_of(&self, name: &str) -> Result<String> {
        let name = LockName::new(name)?;
        let lease = self.session_lease().unwrap_or_default();
        Ok(lock_key(&queue_prefix(&self.inner.namespace, &name), lease))
    }

    /// The id of the session lease now, if the session is alive.
    pub fn session_lease(&self) -> Option<i64> {
        self.inner
            .current_session()
            .filter(|session| !session.is_ended())
            .map(|session| session.id)
    }

    /// The member requests go to alone, while they go to the leader (see
    /// [`EtcdOptions::prefer_leader`]); `None` once spread over every member.
    pub fn pinned_member(&self) -> Option<String> {
        self.inner.affinity.pinned()
    }

    /// How many keys this client holds or queues with now.
    pub fn held(&self) -> usize {
        self.inner.deletions.held()
    }
}

/// What a check of a waiting key found.
enum Check {
    /// Ours is the oldest key in the queue, and still ours.
    First,
    /// Ours waits behind these keys (every key older than ours).
    Behind(Vec<Place>),
    /// Ours is gone: its session lease ended, or someone deleted it.
    Gone,
}

/// A key in a queue, from a range's answer.
fn place(kv: &KeyValue) -> Option<Place> {
    Some(Place {
        key: kv.key_str().ok()?.to_owned(),
        revision: kv.create_revision(),
    })
}

/// The keys of a queue's range older than `revision`.
///
/// Only the queue's own keys count: a key one level deeper
/// (`<queue><more>/<lease>`) is another lock's — `etcdctl lock
/// <namespace>/<name>/<more>`, whose queue etcd's range puts inside this
/// one's. lockkit's own names never nest (see [`keys::segment`](crate::keys::segment)).
fn older(kvs: &[KeyValue], queue: &str, revision: i64) -> Vec<Place> {
    kvs.iter()
        .filter(|kv| kv.create_revision() < revision)
        .filter_map(place)
        .filter(|place| {
            place
                .key
                .strip_prefix(queue)
                .is_some_and(|own| !own.contains('/'))
        })
        .collect()
}

/// How one attempt at the queue ended.
enum Attempt {
    Granted(Grant),
    /// The key vanished before it was granted: start over.
    Vanished,
}

impl Inner {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed(BACKEND).at(self.cluster.servers()));
        }
        Ok(())
    }

    fn current_session(&self) -> Option<Arc<Session>> {
        self.session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn gates(&self) -> MutexGuard<'_, HashMap<String, Gate>> {
        self.gates.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn error(&self, what: impl fmt::Display, error: etcd_client::Error) -> Error {
        from_etcd(what, error).at(self.cluster.servers())
    }

    /// The session lease to put keys with: the current one, or a new one if
    /// it ended.
    async fn live_session(&self) -> Result<Arc<Session>> {
        if let Some(session) = self.current_session().filter(|s| !s.is_ended()) {
            return Ok(session);
        }
        let _granting = self.granting.lock().await;
        if let Some(session) = self.current_session().filter(|s| !s.is_ended()) {
            return Ok(session);
        }
        self.check_open()?;
        let session = Session::grant(
            &self.client,
            &self.affinity,
            self.options.session_ttl,
            self.options.response_timeout,
        )
        .await
        .map_err(|error| error.at(self.cluster.servers()))?;
        *self.session.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&session));
        Ok(session)
    }

    /// The local gate of `queue`: the permit, or the refusal of `wait`.
    ///
    /// A gate held only while a failed or cancelled attempt of this client
    /// withdraws its key is no contention: a try waits for the withdrawal
    /// (bounded by the response timeout) rather than report the lock held.
    async fn enter(&self, queue: &str, name: &str, wait: Wait) -> Result<OwnedSemaphorePermit> {
        let gate = self.gates().entry(queue.to_owned()).or_default().clone();
        let why = "another owner of this client holds or waits for it";
        let closed = || Error::closed(BACKEND).at(self.cluster.servers());
        let entered = match wait {
            Wait::No => match Arc::clone(&gate.permits).try_acquire_owned() {
                Ok(entered) => return Ok(entered),
                Err(TryAcquireError::Closed) => return Err(closed()),
                Err(TryAcquireError::NoPermits) if gate.withdrawing.load(Ordering::Acquire) => {
                    let within = self.options.response_timeout * 2;
                    match tokio::time::timeout(within, gate.permits.acquire_owned()).await {
                        Ok(entered) => entered,
                        Err(_) => return Err(Error::contended(BACKEND, "acquire", name, why)),
                    }
                }
                Err(TryAcquireError::NoPermits) => {
                    return Err(Error::contended(BACKEND, "acquire", name, why))
                }
            },
            Wait::Until(deadline) => {
                match tokio::time::timeout_at(deadline.into(), gate.permits.acquire_owned()).await {
                    Ok(entered) => entered,
                    Err(_) => return Err(Error::timeout(BACKEND, "acquire", name, why)),
                }
            }
            Wait::Forever => gate.permits.acquire_owned().await,
        };
        entered.map_err(|_| closed())
    }

    /// Marks the gate of `key`'s queue as held by a withdrawal (or not).
    fn withdrawing(&self, key: &str, withdrawing: bool) {
        if let Some(gate) = self.gates().get(&queue_of(key)) {
            gate.withdrawing.store(withdrawing, Ordering::Release);
        }
    }

    /// Forgets gates nobody holds or waits for.
    fn prune_gate(&self, queue: &str) {
        let mut gates = self.gates();
        if let Some(gate) = gates.get(queue) {
            if Arc::strong_count(&gate.permits) == 1 && gate.permits.available_permits() == 1 {
                gates.remove(queue);
            }
        }
    }

    /// Runs `txn`, each attempt bounded by the response timeout, and again
    /// while it fails before an answer — a member killed or unreachable, the
    /// cluster between leaders — for up to the response timeout: the
    /// channel then tries another member. Every transaction here is safe to
    /// repeat: reads, deletes at a create revision, and the acquire's put,
    /// whose repeat finds the key its first attempt put (the attempt takes
    /// that key away and starts over).
    async fn txn(&self, what: &str, txn: Txn) -> Result<TxnResponse, Failed> {
        self.txn_counted(what, txn).await.map(|(reply, _)| reply)
    }

    /// [`txn`](Self::txn), saying also whether it was sent more than once
    /// (an earlier attempt may have taken effect before its answer was lost).
    async fn txn_counted(&self, what: &str, txn: Txn) -> Result<(TxnResponse, bool), Failed> {
        let lease_gone = AtomicBool::new(false);
        let repeated = request::answered(
            what,
            self.options.response_timeout,
            &self.affinity,
            || {
                let (mut kv, txn) = (self.client.kv_client(), txn.clone());
                async move { kv.txn(txn).await }
            },
            |error| {
                if is_lease_gone(&error) {
                    lease_gone.store(true, Ordering::Relaxed);
                    Error::new(ErrorKind::NotHeld, BACKEND, "the session lease is gone")
                } else {
                    self.error(what, error)
                }
            },
        )
        .await;
        match repeated.outcome {
            Ok(reply) => Ok((reply, repeated.attempts > 1)),
            Err(_) if lease_gone.load(Ordering::Relaxed) => Err(Failed::LeaseGone),
            Err(error) => Err(Failed::Error(error.at(self.cluster.servers()))),
        }
    }

    /// Deletes `key` if it still has create revision `revision`; whether it
    /// did. A delete sent more than once that finds the key gone is taken
    /// for done: the earlier attempt deleted it (the rule `Lease::release`
    /// applies to its own repeats, here for the backend's).
    async fn delete(&self, what: &str, key: &str, revision: i64) -> Result<bool> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, revision)])
            .and_then([TxnOp::delete(key, None)]);
        match self.txn_counted(what, txn).await {
            Ok((reply, repeated)) => Ok(reply.succeeded() || repeated),
            Err(failed) => Err(failed.into_error(what, self)),
        }
    }

    /// Deletes `key` whatever its revision: a key of this client's session
    /// that no grant uses (the name's gate is held).
    async fn delete_any(&self, key: &str) -> Result<()> {
        let what = "withdraw a cancelled acquire";
        let txn = Txn::new().and_then([TxnOp::delete(key, None)]);
        match self.txn(what, txn).await {
            Ok(_) => Ok(()),
            Err(failed) => Err(failed.into_error(what, self)),
        }
    }

    /// Where `key` (created at `revision`) stands in `queue`: one read.
    async fn check(&self, name: &str, queue: &str, key: &str, revision: i64) -> Result<Check> {
        let what = format!("acquire `{name}`: check the queue");
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, revision)])
            .and_then([TxnOp::get(
                queue,
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_max_create_revision(revision - 1)
                        .with_keys_only(),
                ),
            )]);
        let reply = self
            .txn(&what, txn)
            .await
            .map_err(|failed| failed.into_error(&what, self))?;
        if !reply.succeeded() {
            return Ok(Check::Gone);
        }
        let before = older(&ranged(&reply, 0), queue, revision);
        Ok(if before.is_empty() {
            Check::First
        } else {
            Check::Behind(before)
        })
    }
}

/// A failed request: the session lease was gone, or another error.
enum Failed {
    LeaseGone,
    Error(Error),
}

impl Failed {
    fn into_error(self, what: &str, inner: &Inner) -> Error {
        match self {
            Self::Error(error) => error,
            Self::LeaseGone => Error::new(
                ErrorKind::Unavailable,
                BACKEND,
                format!("{what}: the session lease is gone at the server"),
            )
            .at(inner.cluster.servers()),
        }
    }
}

/// The key-values of the range at `index` of a transaction's answers.
fn ranged(reply: &TxnResponse, index: usize) -> Vec<KeyValue> {
    match reply.op_responses().into_iter().nth(index) {
        Some(TxnOpResponse::Get(mut get)) => get.take_kvs(),
        _ => Vec::new(),
    }
}

/// How a wait for a key's turn ended.
enum Turn {
    /// Ours is the oldest key of the queue, confirmed at its create revision.
    First { waited: bool },
    /// Ours is gone.
    Gone,
    /// Someone else's key is older and the acquire asked not to wait.
    Contended,
    /// The deadline passed first.
    TimedOut,
}

/// What an undo of a put works on: the backend's state, the session the
/// key was put on, and the key.
type Put = (Arc<Inner>, Arc<Session>, String);

/// The undo of an acquire whose key may exist: deletes it — at its create
/// revision once known, so a newer key of this client is never touched —
/// then forgets it, which gives the name's gate back (see [`withdraw`]).
/// Without a runtime nothing can be sent: the key is forgotten, and this
/// client's next acquire of the name finds it and deletes it.
fn undo_put<'a>(
    inner: &'a Arc<Inner>,
    session: &Arc<Session>,
    key: String,
    revision: Option<i64>,
) -> Undo<'a, Put, impl UndoStep<Put>, impl FnOnce(Put)> {
    Undo::new(
        &inner.background,
        (Arc::clone(inner), Arc::clone(session), key),
        move |(inner, session, key): Put| {
            inner.withdrawing(&key, true);
            withdraw(inner, session, key, revision)
        },
        move |(inner, _, key): Put| {
            inner.deletions.forget(&key, revision);
            tracing::warn!(
                backend = BACKEND,
                key,
                "an acquire was cancelled where no runtime is reachable; its key stays \
                 until this client's next acquire of the name, or the session's end"
            );
        },
    )
}

/// Deletes a key no grant uses — at its create revision once known — then
/// forgets it, which opens the name's gate. A failure before an answer is
/// tried again, with pauses from 50 ms doubling to 500 ms, for as long as the
/// session lives and the backend is open: a key must not outlive its use
/// while its lease is kept alive. (A session that ended, or a backend
/// closed — its lease revoked — took the key with it.)
async fn withdraw(inner: Arc<Inner>, session: Arc<Session>, key: String, revision: Option<i64>) {
    let what = "withdraw a key no grant uses";
    let deleted = (|| async {
        match revision {
            Some(revision) => inner.delete(what, &key, revision).await.map(drop),
            None => inner.delete_any(&key).await,
        }
    })
    .retry(repeat::background_pauses())
    .sleep(tokio::time::sleep)
    .when(|error| {
        repeat::is_transient(error) && !session.is_ended() && !inner.closed.load(Ordering::Acquire)
    })
    .await;
    if let Err(error) = deleted {
        tracing::debug!(%error, key, "gave up deleting a key: its session ended or the backend closed");
    }
    inner.withdrawing(&key, false);
    inner.deletions.forget(&key, revision);
}

impl EtcdBackend {
    /// One attempt: put the key in the queue, wait for the keys before it
    /// to go, confirm it is still ours.
    async fn attempt(
        &self,
        request: &AcquireRequest,
        queue: &str,
        deadline: Option<Instant>,
    ) -> Result<Attempt> {
        let inner = &self.inner;
        let name = request.name.as_str();
        let gate = inner.enter(queue, name, request.wait).await?;
        let session = inner.live_session().await?;
        let key = lock_key(queue, session.id);
        let signal = inner.deletions.hold(&key, gate);
        // Dropped before the transaction answers, the put may have landed.
        let unanswered = undo_put(inner, &session, key.clone(), None);
        let what = format!("acquire `{name}`");
        let put = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([
                TxnOp::put(
                    key.as_str(),
                    request.owner.to_hex(),
                    Some(PutOptions::new().with_lease(session.id)),
                ),
                TxnOp::get(
                    queue,
                    Some(GetOptions::new().with_prefix().with_keys_only()),
                ),
            ])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let reply = match inner.txn(&what, put).await {
            Ok(reply) => reply,
            Err(Failed::LeaseGone) => {
                // Nothing was put: the lease it needed is gone.
                session.end();
                unanswered.disarm();
                inner.deletions.forget(&key, None);
                return Ok(Attempt::Vanished);
            }
            Err(Failed::Error(error)) => return Err(error),
        };
        if !reply.succeeded() {
            // A key of this session no grant uses: a cancelled acquire's
            // whose delete did not reach a member. Take it away, start over.
            if let Some(left) = ranged(&reply, 0).first() {
                inner.delete(&what, &key, left.create_revision()).await?;
            }
            unanswered.disarm();
            inner.deletions.forget(&key, None);
            return Ok(Attempt::Vanished);
        }
        let revision = reply.header().map_or(0, |header| header.revision());
        unanswered.disarm();
        let placed = undo_put(inner, &session, key.clone(), Some(revision));
        let token = FencingToken::new(u64::try_from(revision).unwrap_or(0)).ok_or_else(|| {
            Error::new(
                ErrorKind::Backend,
                BACKEND,
                format!("{what}: the transaction answered revision {revision}"),
            )
        })?;
        // The range ran after the put: every key of the queue, ours the newest.
        let before = older(&ranged(&reply, 1), queue, revision);
        let verify = match inner.deletions.created(&key, revision) {
            Granted::Live => false,
            Granted::Deleted => {
                placed.disarm();
                return Ok(Attempt::Vanished);
            }
            // The watch was opened again meanwhile: read where the key stands.
            Granted::Unsure => true,
        };
        let mut contended = !before.is_empty();
        if contended || verify {
            let turn = self
                .wait_turn(request, queue, (&key, revision), before, deadline)
                .await?;
            let refusal = match turn {
                Turn::First { waited } => {
                    contended |= waited;
                    None
                }
                Turn::Gone => {
                    placed.disarm();
                    inner.deletions.lost(&key, revision);
                    return Ok(Attempt::Vanished);
                }
                Turn::Contended => Some(Error::contended(
                    BACKEND,
                    "acquire",
                    name,
                    "an older key is in its queue",
                )),
                Turn::TimedOut => Some(Error::timeout(
                    BACKEND,
                    "acquire",
                    name,
                    "older keys are still in its queue",
                )),
            };
            if let Some(refusal) = refusal {
                // Leave the queue before answering: nothing stays behind.
                inner.delete(&what, &key, revision).await?;
                placed.disarm();
                inner.deletions.forget(&key, Some(revision));
                return Err(refusal);
            }
        }
        // A grant made while close() ran would outlive it: the undo gives it back.
        inner.check_open()?;
        placed.disarm();
        Ok(Attempt::Granted(Grant {
            contended,
            watches: vec![session.watch(), inner.deletions.watch(), signal.watch()],
            handle: Some(GrantHandle::new(Held {
                key,
                revision,
                owner: request.owner,
                session,
                _signal: signal,
            })),
            ..Grant::new(token, None)
        }))
    }

    /// Waits until `own` key is the oldest of `queue`. Registers interest
    /// in the deletes of the keys before it, *then* reads the queue — so
    /// each of those deletes is seen by the read or delivered by the watch —
    /// and waits until the watch saw all of them deleted. Keys older than
    /// ours can only go, never come, so then ours is the oldest; and as the
    /// watch delivers deletes in revision order and saw none of our own key,
    /// it stood at that instant (see [`Deletions::vouches`]). Otherwise — the
    /// watch opened again, or cannot vouch — the queue is read again.
    async fn wait_turn(
        &self,
        request: &AcquireRequest,
        queue: &str,
        (key, revision): (&str, i64),
        mut before: Vec<Place>,
        deadline: Option<Instant>,
    ) -> Result<Turn> {
        let inner = &self.inner;
        let deletions = &inner.deletions;
        let name = request.name.as_str();
        let mut waited = false;
        loop {
            inner.check_open()?;
            // Withdrawn when dropped, however this wait ends.
            let interest = deletions.await_deletes(key, &before);
            let current = match inner.check(name, queue, key, revision).await? {
                Check::Behind(current) => current,
                Check::First => return Ok(Turn::First { waited }),
                Check::Gone => return Ok(Turn::Gone),
            };
            if request.wait == Wait::No {
                return Ok(Turn::Contended);
            }
            waited = true;
            match deletions.narrow(&interest, &current) {
                Narrowed::Missing => {
                    before = current;
                    continue;
                }
                Narrowed::AllGone if deletions.vouches(key, revision) => {
                    return Ok(Turn::First { waited });
                }
                Narrowed::AllGone => {
                    before = Vec::new();
                    continue;
                }
                Narrowed::Waiting => {}
            }
            let woken = match deadline {
                Some(deadline) => {
                    tokio::time::timeout_at(deadline.into(), interest.wake.notified())
                        .await
                        .is_ok()
                }
                None => {
                    interest.wake.notified().await;
                    true
                }
            };
            inner.check_open()?;
            if interest.cleared() && deletions.vouches(key, revision) {
                return Ok(Turn::First { waited });
            }
            if !woken {
                return Ok(Turn::TimedOut);
            }
            before = current;
        }
    }

    /// The grant a claim presents, if it is one of this backend's for its owner.
    fn claimed<'c>(&self, claim: &'c Claim, action: &str) -> Result<&'c Held> {
        let refuse = |why: &str| Error::not_held(BACKEND, action, claim.name.as_str(), why);
        let held = claim
            .handle::<Held>()
            .ok_or_else(|| refuse("this backend never granted that claim"))?;
        if held.owner != claim.owner || u64::try_from(held.revision).ok() != Some(claim.token.get())
        {
            return Err(refuse("the grant is another owner's"));
        }
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(refuse(
                "the backend was closed: its session lease was revoked, and every lock on it lost",
            ));
        }
        Ok(held)
    }
}

#[async_trait]
impl LockBackend for EtcdBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    /// # Cancel safety
    ///
    /// Dropping the future at any await leaves nothing behind: an [`Undo`]
    /// deletes the key in the background (its put may have landed) and only
    /// then lets another owner of this client take the name; without a
    /// runtime, the key goes with the session lease.
    async fn acquire(&self, request: AcquireRequest) -> Result<Grant> {
        let inner = &self.inner;
        inner.check_open()?;
        let queue = queue_prefix(&inner.namespace, &request.name);
        let deadline = match request.wait {
            Wait::Until(deadline) => Some(deadline),
            Wait::No | Wait::Forever => None,
        };
        let outcome = async {
            for _ in 0..ATTEMPTS {
                match self.attempt(&request, &queue, deadline).await? {
                    Attempt::Granted(grant) => return Ok(grant),
                    Attempt::Vanished => inner.check_open()?,
                }
            }
            Err(Error::new(
                ErrorKind::Unavailable,
                BACKEND,
                format!(
                    "acquire `{}`: its key vanished {ATTEMPTS} times before it was granted \
                     (the session lease ended, or something deletes keys under `{queue}`)",
                    request.name.as_str()
                ),
            )
            .at(inner.cluster.servers()))
        }
        .await;
        inner.prune_gate(&queue);
        outcome
    }

    async fn extend(&self, claim: &Claim, _ttl: Duration) -> Result<Option<Instant>> {
        let inner = &self.inner;
        let held = self.claimed(claim, "extend")?;
        let name = claim.name.as_str();
        if !inner.deletions.is_held(&held.key, held.revision) || held.session.is_ended() {
            return Err(Error::not_held(BACKEND, "extend", name, "its key is gone"));
        }
        // A keep-alive now: the session's bound, which the lease follows,
        // moves as a TTL lease's would.
        held.session.refresh(inner.options.response_timeout).await;
        let what = format!("extend `{name}`");
        let read = Txn::new().and_then([TxnOp::get(held.key.as_str(), None)]);
        let read = inner
            .txn(&what, read)
            .await
            .map_err(|failed| failed.into_error(&what, inner))?;
        match ranged(&read, 0).first() {
            Some(kv) if kv.create_revision() == held.revision && !held.session.is_ended() => {
                Ok(None)
            }
            _ => {
                inner.deletions.lost(&held.key, held.revision);
                Err(Error::not_held(BACKEND, "extend", name, "its key is gone"))
            }
        }
    }

    async fn release(&self, claim: &Claim) -> Result<()> {
        let inner = &self.inner;
        let held = self.claimed(claim, "release")?;
        let name = claim.name.as_str();
        // Marked first, so the delete's own event, if it comes before the
        // answer, ends nothing: the lease is being released, not lost. The
        // name's gate opens for this client's next owner once the key is
        // gone — seen by that event or by the answer.
        let first = inner.deletions.releasing(&held.key, held.revision);
        let deleted = match inner
            .delete(&format!("release `{name}`"), &held.key, held.revision)
            .await
        {
            Ok(deleted) => deleted,
            Err(error) => {
                // The caller may give up; the key must not stay while the
                // session is kept alive. Deleted in the background until
                // done (or the session ends), then the gate opens.
                if first && repeat::is_transient(&error) {
                    inner.withdrawing(&held.key, true);
                    let withdrawn = withdraw(
                        Arc::clone(inner),
                        Arc::clone(&held.session),
                        held.key.clone(),
                        Some(held.revision),
                    );
                    if !inner.background.spawn(withdrawn) {
                        tracing::warn!(
                            key = held.key,
                            "no runtime to delete a key whose release failed"
                        );
                    }
                }
                return Err(error);
            }
        };
        inner.deletions.forget(&held.key, Some(held.revision));
        inner.prune_gate(&queue_of(&held.key));
        if deleted {
            Ok(())
        } else {
            Err(Error::not_held(BACKEND, "release", name, "its key is gone"))
        }
    }

    /// The holder is the queue's oldest key — lockkit's, `etcdctl lock`'s
    /// or a Go `concurrency.Mutex`'s alike: its create revision is the
    /// token, its session lease names the holder (`etcd lease 694d8a1b2c3d`).
    /// No grant time: etcd keeps none. One linearizable read.
    async fn status(&self, name: &LockName) -> Result<LockStatus> {
        let inner = &self.inner;
        inner.check_open()?;
        let queue = queue_prefix(&inner.namespace, name);
        let what = format!("read the holder of `{name}`");
        let txn = Txn::new().and_then([TxnOp::get(
            queue.as_str(),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )]);
        let reply = inner
            .txn(&what, txn)
            .await
            .map_err(|failed| failed.into_error(&what, inner))?;
        let oldest = older(&ranged(&reply, 0), &queue, i64::MAX)
            .into_iter()
            .min_by_key(|place| place.revision);
        let Some(oldest) = oldest else {
            return Ok(LockStatus::Free);
        };
        let mut holder = Holder::new(Expiry::Session);
        holder.token = u64::try_from(oldest.revision)
            .ok()
            .and_then(FencingToken::new);
        holder.holder = oldest
            .key
            .strip_prefix(&queue)
            .map(|lease| format!("etcd lease {lease}"));
        Ok(LockStatus::Held(holder))
    }

    /// The version of the member this client's requests go to (`Status`).
    async fn server_version(&self) -> Result<String> {
        let inner = &self.inner;
        inner.check_open()?;
        let what = "read the server's status";
        let repeated = request::answered(
            what,
            inner.options.response_timeout,
            &inner.affinity,
            || {
                let mut maintenance = inner.client.maintenance_client();
                async move { maintenance.status().await }
            },
            |error| inner.error(what, error),
        )
        .await;
        Ok(repeated.outcome?.version().to_owned())
    }

    /// Revokes the session lease — the server deletes every key of this
    /// client at once — ends every wait and every lease (Lost), and stops
    /// the watch. Later calls fail with a non-retryable `Unavailable`.
    async fn close(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        for gate in inner.gates().values() {
            gate.permits.close();
        }
        inner.deletions.stop();
        let _granting = inner.granting.lock().await;
        let revoked = match inner.current_session() {
            Some(session) => session
                .close(
                    &inner.client,
                    &inner.affinity,
                    inner.options.response_timeout,
                )
                .await
                .map_err(|error| error.at(inner.cluster.servers())),
            None => Ok(()),
        };
        inner
            .background
            .settle(inner.options.response_timeout)
            .await;
        revoked
    }
}

/// The queue prefix of a lock key: everything up to its last `/`.
fn queue_of(key: &str) -> String {
    match key.rfind('/') {
        Some(end) => key[..=end].to_owned(),
        None => key.to_owned(),
    }
}
