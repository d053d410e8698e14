//! The ZooKeeper backend: Curator's `InterProcessMutex` recipe of ephemeral
//! sequential nodes, done on one session per backend.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, UNIX_EPOCH};

use async_trait::async_trait;
use backon::{BackoffBuilder, Retryable};
use lockkit_core::{
    repeat, AcquireRequest, Background, Capabilities, Claim, Error, ErrorKind, Expiry, Fairness,
    FencingGuarantee, FencingToken, Grant, GrantHandle, Holder, LeaseModel, LockBackend, LockName,
    LockStatus, OwnerToken, Result, SafetyClass, SessionHealth, SessionSignal, Undo, UndoStep,
    Wait, WaitMode,
};
use zookeeper_client::{
    Acls, CreateMode, Error as ZkError, EventType, OneshotWatcher, Stat, WatchedEvent,
};

use crate::deletes::{Deletes, Sent};
use crate::error::{from_zk, BACKEND};
use crate::keys::{lock_path, node_prefix, sequence_of};
use crate::options::{ZkConfig, ZkOptions};
use crate::request::{self, Answer};
use crate::session::Session;
use crate::url::{self, Ensemble};

/// How many times an acquire starts over when its node vanished under it
/// (its session ended, or someone deleted it) before it reports so.
const ATTEMPTS: usize = 3;

/// A lock service on one ZooKeeper ensemble.
///
/// Cheap to clone; clones share the session and its connection. See the
/// [crate documentation](crate) for what it promises.
#[derive(Clone)]
pub struct ZkBackend {
    inner: Arc<Inner>,
}

struct Inner {
    ensemble: Ensemble,
    namespace: String,
    options: ZkOptions,
    capabilities: Capabilities,
    /// The session every lock node is an ephemeral node of, replaced when
    /// it ends.
    session: Mutex<Option<Arc<Session>>>,
    establishing: tokio::sync::Mutex<()>,
    /// How many lock nodes of this backend hold or wait now.
    nodes: Arc<AtomicUsize>,
    /// Releases, sent together while one is in flight.
    deletes: Deletes,
    background: Background,
    closed: AtomicBool,
}

impl fmt::Debug for ZkBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZkBackend")
            .field("ensemble", &self.inner.ensemble)
            .field("namespace", &self.inner.namespace)
            .field("nodes", &self.inner.nodes.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    /// The last clone of the backend is gone, and with it every lease on
    /// it: the client goes, which closes the session (and deletes every
    /// node of it) as soon as a server answers.
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

/// What one lock node's holder knows of it: its own signal, ended when the
/// node is seen deleted by someone else, and whether it is being released.
#[derive(Debug)]
struct Node {
    signal: SessionSignal,
    releasing: AtomicBool,
    /// Counted in the backend's nodes while this lives.
    nodes: Arc<AtomicUsize>,
}

impl Node {
    fn new(nodes: &Arc<AtomicUsize>) -> Arc<Self> {
        nodes.fetch_add(1, Ordering::Relaxed);
        Arc::new(Self {
            signal: SessionSignal::new(),
            releasing: AtomicBool::new(false),
            nodes: Arc::clone(nodes),
        })
    }

    /// The node is gone, and not by this client's release: its lease is Lost.
    fn gone(&self) {
        if !self.releasing.load(Ordering::Acquire) {
            self.signal.end();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.nodes.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How many times [`ZkBackend::status`] lists a queue whose first node
/// vanishes before it is read.
const STATUS_READS: usize = 5;

/// A ZooKeeper grant's [`GrantHandle`]: the node's path, its czxid (the
/// fencing token), the owner, and the session it lives on.
struct Held {
    path: String,
    czxid: i64,
    owner: OwnerToken,
    session: Arc<Session>,
    node: Arc<Node>,
}

impl ZkBackend {
    /// Connects to `url` (`zk://host:2181,host:2182,host:2183/chroot`) with
    /// the default [`ZkOptions`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, ZkOptions::new()).await
    }

    /// Connects to `url` with a configuration's namespace and `[zk]`
    /// section, as the `lockkit` facade does; see [`connect_with`](Self::connect_with).
    pub async fn from_config(url: &str, namespace: &str, config: &ZkConfig) -> Result<Self> {
        Self::connect_with(url, ZkOptions::from_config(namespace, config)).await
    }

    /// Connects to `url` with `options`: establishes the session (and
    /// creates the chroot if it is missing) before it returns.
    ///
    /// A malformed URL or bad option is a `Config` error naming it, and so
    /// is a refused user; no server answering is `Unavailable`.
    pub async fn connect_with(url: &str, options: ZkOptions) -> Result<Self> {
        options.validate()?;
        let ensemble = url::parse(url)?;
        let session = Session::establish(&ensemble, &options)
            .await
            .map_err(|error| error.at(ensemble.servers()))?;
        let mut capabilities = Capabilities::new(
            SafetyClass::Correctness,
            FencingGuarantee::Linearizable,
            LeaseModel::Session,
            WaitMode::Notify,
            Fairness::Fifo,
        );
        capabilities.drift = lockkit_core::session_drift(options.session_timeout);
        capabilities.session_timeout = true;
        capabilities.status = true;
        let background = Background::new();
        Ok(Self {
            inner: Arc::new(Inner {
                namespace: options.namespace.clone(),
                ensemble,
                deletes: Deletes::new(options.response_timeout, background.clone()),
                options,
                capabilities,
                session: Mutex::new(Some(session)),
                establishing: tokio::sync::Mutex::new(()),
                nodes: Arc::new(AtomicUsize::new(0)),
                background,
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// The node a lock's queue lives under, from the chroot:
    /// `/<namespace>/<name>` (see [`keys`](crate::keys)).
    pub fn lock_path(&self, name: &str) -> Result<String> {
        Ok(lock_path(&self.inner.namespace, &LockName::new(name)?))
    }

    /// The id of the session now, if it is alive.
    pub fn session_id(&self) -> Option<i64> {
        self.inner
            .current_session()
            .filter(|session| !session.is_ended())
            .map(|session| session.id)
    }

    /// The session's id and password while it lives: what a second client
    /// needs to attach to it — as Curator's tests expire a session, by
    /// attaching and closing. Keep it secret: it can close every lock of
    /// this backend.
    pub fn session_info(&self) -> Option<zookeeper_client::SessionInfo> {
        self.inner
            .current_session()
            .filter(|session| !session.is_ended())
            .map(|session| session.info.clone())
    }

    /// How many lock nodes of this backend's acquires and grants are alive
    /// now: an acquire's while it runs, a grant's until its lease is
    /// dropped — after its release too, until then.
    pub fn held(&self) -> usize {
        self.inner.nodes.load(Ordering::Relaxed)
    }
}

impl Inner {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed(BACKEND).at(self.ensemble.servers()));
        }
        Ok(())
    }

    fn current_session(&self) -> Option<Arc<Session>> {
        self.session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The session to create nodes on: the current one, or a new one if it
    /// ended.
    async fn live_session(&self) -> Result<Arc<Session>> {
        if let Some(session) = self.current_session().filter(|s| !s.is_ended()) {
            return Ok(session);
        }
        let _establishing = self.establishing.lock().await;
        if let Some(session) = self.current_session().filter(|s| !s.is_ended()) {
            return Ok(session);
        }
        self.check_open()?;
        let session = Session::establish(&self.ensemble, &self.options)
            .await
            .map_err(|error| error.at(self.ensemble.servers()))?;
        let replaced = self
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(Arc::clone(&session));
        if let Some(old) = replaced {
            old.end();
        }
        Ok(session)
    }

    /// [`request::answered`] on `session`, with this backend's timeout and
    /// its servers named in an error.
    async fn ask<T, F, Fut>(
        &self,
        what: &str,
        session: &Session,
        call: F,
    ) -> Result<(Answer<T>, bool)>
    where
        F: FnMut(zookeeper_client::Client) -> Fut,
        Fut: std::future::Future<Output = Answer<T>>,
    {
        let repeated = request::answered(what, session, self.options.response_timeout, call).await;
        match repeated.outcome {
            Ok(answer) => Ok((answer, repeated.attempts > 1)),
            Err(error) => Err(error.at(self.ensemble.servers())),
        }
    }

    /// The children of `parent`; `None` if `parent` is gone.
    async fn children(
        &self,
        what: &str,
        session: &Session,
        parent: &str,
    ) -> Result<Option<Vec<String>>> {
        let (listed, _) = self
            .ask(what, session, |client| async move {
                client.list_children(parent).await
            })
            .await?;
        match listed {
            Ok(children) => Ok(Some(children)),
            Err(ZkError::NoNode) => Ok(None),
            Err(error) => Err(self.error(what, error)),
        }
    }

    /// The children of `parent` and a watch of them (it fires at the next
    /// child created or deleted, or when `parent` goes); `None` if `parent`
    /// is gone.
    async fn children_watched(
        &self,
        what: &str,
        session: &Session,
        parent: &str,
    ) -> Result<Option<Listed>> {
        let (listed, _) = self
            .ask(what, session, |client| async move {
                client.list_and_watch_children(parent).await
            })
            .await?;
        match listed {
            Ok(listed) => Ok(Some(listed)),
            Err(ZkError::NoNode) => Ok(None),
            Err(error) => Err(self.error(what, error)),
        }
    }

    /// Deletes the node at `path`; whether it was there. A delete sent more
    /// than once that finds the node gone is taken for done: the earlier
    /// attempt deleted it (the rule `Lease::release` applies to its own
    /// repeats, here for the backend's).
    async fn delete(&self, what: &str, session: &Session, path: &str) -> Result<bool> {
        self.delete_again(what, session, path, false).await
    }

    /// A release's delete: sent with the others in flight ([`Deletes`]),
    /// or alone if theirs failed together.
    async fn release_node(&self, what: &str, session: &Arc<Session>, path: &str) -> Result<bool> {
        match self.deletes.delete(what, session, path).await {
            Sent::Deleted => Ok(true),
            Sent::Gone { repeated } => Ok(repeated),
            Sent::Failed(error) => Err(error.at(self.ensemble.servers())),
            Sent::Alone { maybe_done } => self.delete_again(what, session, path, maybe_done).await,
        }
    }

    /// [`delete`](Self::delete); `sent`: an earlier delete of the node may
    /// have been applied without its answer, so its absence counts as done.
    async fn delete_again(
        &self,
        what: &str,
        session: &Session,
        path: &str,
        sent: bool,
    ) -> Result<bool> {
        let (deleted, repeated) = self
            .ask(what, session, |client| async move {
                client.delete(path, None).await
            })
            .await?;
        match deleted {
            Ok(()) => Ok(true),
            Err(ZkError::NoNode) => Ok(repeated || sent),
            Err(error) => Err(self.error(what, error)),
        }
    }

    /// The node of `parent` created with `guid`, if there is one: Curator's
    /// protection mode, for a create whose answer was lost. A `sync` first
    /// brings the server answering up to the leader, so a create the
    /// ensemble committed is seen; the list goes out with it, and the
    /// server answers it after the `sync`.
    async fn find(
        &self,
        what: &str,
        session: &Session,
        parent: &str,
        guid: &str,
    ) -> Result<Option<String>> {
        let synced = self.ask(
            what,
            session,
            |client| async move { client.sync(parent).await },
        );
        let listed = self.children(what, session, parent);
        let (synced, listed) = tokio::join!(synced, listed);
        // A refused sync (the parent gone) leaves the list to say so.
        let (_refused, _) = synced?;
        let Some(children) = listed? else {
            return Ok(None);
        };
        Ok(children
            .into_iter()
            .find(|child| child.contains(guid))
            .map(|child| format!("{parent}/{child}")))
    }

    /// [`find`](Self::find), and the node's stat, for an acquire to take it.
    async fn find_with_stat(
        &self,
        what: &str,
        session: &Session,
        parent: &str,
        guid: &str,
    ) -> Result<Option<(String, Stat)>> {
        let Some(path) = self.find(what, session, parent, guid).await? else {
            return Ok(None);
        };
        let (stat, _) = self
            .ask(what, session, |client| {
                let path = path.clone();
                async move { client.check_stat(&path).await }
            })
            .await?;
        match stat {
            Ok(Some(stat)) => Ok(Some((path, stat))),
            Ok(None) => Ok(None),
            Err(error) => Err(self.error(what, error)),
        }
    }

    /// Creates `parent` and the namespace above it, as container nodes the
    /// server deletes once their last child is gone.
    async fn make_parents(&self, what: &str, session: &Session, parent: &str) -> Result<()> {
        let (made, _) = self
            .ask(what, session, |client| async move {
                let options = CreateMode::Container.with_acls(Acls::anyone_all());
                client.mkdir(parent, &options).await
            })
            .await?;
        made.map_err(|error| self.error(what, error))
    }

    fn error(&self, what: &str, error: ZkError) -> Error {
        from_zk(what, error).at(self.ensemble.servers())
    }
}

/// A parent's children, and a watch of them.
type Listed = (Vec<String>, OneshotWatcher);

/// A watch set at the server: its event, when it fires. (Its request
/// answered; the event comes once.)
type Watch = Pin<Box<dyn Future<Output = WatchedEvent> + Send>>;

fn watch(watcher: OneshotWatcher) -> Watch {
    Box::pin(watcher.changed())
}

/// The event of `watch` if it fired already, without waiting. (The driver
/// hands a connection's events over in the order they came, so an event
/// that came before an answer is there once the answer is.)
fn fired(watch: &mut Watch) -> Option<EventType> {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match watch.as_mut().poll(&mut context) {
        std::task::Poll::Ready(event) => Some(event.event_type),
        std::task::Poll::Pending => None,
    }
}

/// Which watch of a waiter fired first, and with what.
enum Woken {
    Own(EventType),
    Before(EventType),
}

/// How one attempt at the queue ended.
enum Attempt {
    Granted(Grant),
    /// The node vanished before it was granted: start over.
    Vanished,
}

/// How a wait for a node's turn ended.
enum Turn {
    /// Ours is the first lock node of the queue. The watch that fires when
    /// ours goes — of our own node if we waited, else of the queue's
    /// children, set by the list that found it first — is the holder's.
    First { waited: bool, watch: Option<Watch> },
    /// Ours is gone.
    Gone,
    /// Another node is first and the acquire asked not to wait.
    Contended,
    /// The deadline passed first.
    TimedOut,
}

impl ZkBackend {
    /// One attempt: create the node, wait for the nodes before it to go.
    async fn attempt(
        &self,
        request: &AcquireRequest,
        parent: &str,
        deadline: Option<Instant>,
    ) -> Result<Attempt> {
        let inner = &self.inner;
        let name = request.name.as_str();
        let what = format!("acquire `{name}`");
        let session = inner.live_session().await?;
        let guid = uuid::Uuid::new_v4().to_string();
        let prefix = node_prefix(parent, &guid);
        let node = Node::new(&inner.nodes);
        // Dropped before the create answers, the node may exist: found by
        // its GUID and deleted.
        let unanswered = undo_node(
            inner,
            &session,
            Place::Guid(parent.to_owned(), guid.clone()),
        );
        let data = request.owner.to_hex();
        let (path, stat, mut children) = loop {
            let client = session.client()?;
            let options = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
            // Both go out now, in this order: the server answers the list
            // after the create, so it holds our node.
            let created = client.create(&prefix, data.as_bytes(), &options);
            let listed = client.list_and_watch_children(parent);
            let created = tokio::time::timeout(inner.options.response_timeout, created).await;
            match created {
                Ok(Ok((stat, sequence))) => {
                    let listed = tokio::time::timeout(inner.options.response_timeout, listed)
                        .await
                        .ok()
                        .and_then(std::result::Result::ok);
                    break (format!("{prefix}{sequence}"), stat, listed);
                }
                Ok(Err(ZkError::NoNode)) => {
                    drop(listed);
                    inner.make_parents(&what, &session, parent).await?;
                }
                Ok(Err(error)) if crate::error::is_transient(&error) => {
                    drop(listed);
                    // Curator's protection mode: the create may have landed.
                    if let Some((path, stat)) =
                        inner.find_with_stat(&what, &session, parent, &guid).await?
                    {
                        break (path, stat, None);
                    }
                    inner.check_open()?;
                }
                Err(_) => {
                    drop(listed);
                    if let Some((path, stat)) =
                        inner.find_with_stat(&what, &session, parent, &guid).await?
                    {
                        break (path, stat, None);
                    }
                    return Err(
                        crate::error::no_answer(&what, inner.options.response_timeout)
                            .at(inner.ensemble.servers()),
                    );
                }
                Ok(Err(error)) if crate::error::is_session_gone(&error) => {
                    session.end();
                    unanswered.disarm();
                    return Ok(Attempt::Vanished);
                }
                Ok(Err(error)) => return Err(inner.error(&what, error)),
            }
        };
        unanswered.disarm();
        let placed = undo_node(inner, &session, Place::Path(path.clone()));
        if stat.ephemeral_owner != session.id {
            // Not this session's: a node of a session that ended meanwhile.
            return Ok(Attempt::Vanished);
        }
        let token = FencingToken::new(u64::try_from(stat.czxid).unwrap_or(0)).ok_or_else(|| {
            Error::new(
                ErrorKind::Backend,
                BACKEND,
                format!("{what}: the create answered czxid {}", stat.czxid),
            )
        })?;
        let own = path.rsplit_once('/').map_or(path.as_str(), |(_, own)| own);
        let turn = self
            .wait_turn(request, &session, parent, own, children.take(), deadline)
            .await?;
        let refusal = match turn {
            Turn::First { waited, watch } => {
                watch_held(inner, &session, parent, own, &node, watch);
                // A grant made while close() ran would outlive it: the undo
                // gives it back.
                inner.check_open()?;
                placed.disarm();
                return Ok(Attempt::Granted(Grant {
                    contended: waited,
                    watches: vec![session.watch(), node.signal.watch()],
                    handle: Some(GrantHandle::new(Held {
                        path,
                        czxid: stat.czxid,
                        owner: request.owner,
                        session,
                        node,
                    })),
                    ..Grant::new(token, None)
                }));
            }
            Turn::Gone => {
                placed.disarm();
                return Ok(Attempt::Vanished);
            }
            Turn::Contended => {
                Error::contended(BACKEND, "acquire", name, "an older node is in its queue")
            }
            Turn::TimedOut => Error::timeout(
                BACKEND,
                "acquire",
                name,
                "older nodes are still in its queue",
            ),
        };
        // Leave the queue before answering: nothing stays behind.
        node.releasing.store(true, Ordering::Release);
        inner.delete(&what, &session, &path).await?;
        placed.disarm();
        Err(refusal)
    }

    /// Waits until `own` is the first lock node of `parent`: lists the
    /// children, and while another is before ours, watches the one just
    /// before it (no herd: each waiter watches one node) and lists again
    /// when it goes — unless it was the only one before ours: no node
    /// created later sorts before ours, so ours is first, with no list.
    /// A waiter also watches its own node, so that a node deleted while it
    /// waits is seen before its predecessor's deletion is taken for the
    /// lock; once held, that watch is the holder's. Each list also watches
    /// the children, the holder's watch when the first list finds ours
    /// first; a waiter leaves that watch to fire once, unheeded ([`park`]).
    async fn wait_turn(
        &self,
        request: &AcquireRequest,
        session: &Session,
        parent: &str,
        own: &str,
        mut listed: Option<Listed>,
        deadline: Option<Instant>,
    ) -> Result<Turn> {
        let inner = &self.inner;
        let what = format!("acquire `{}`", request.name.as_str());
        let own_path = format!("{parent}/{own}");
        let mut own_watch: Option<Watch> = None;
        let mut waited = false;
        loop {
            inner.check_open()?;
            let (children, queue) = match listed.take() {
                Some(listed) => listed,
                None => match inner.children_watched(&what, session, parent).await? {
                    Some(listed) => listed,
                    None => return Ok(Turn::Gone),
                },
            };
            if !children.iter().any(|child| child == own) {
                park(queue);
                return Ok(Turn::Gone);
            }
            let older = older(&children, own);
            let Some(before) = older.last() else {
                // Our own node's watch, if we waited, fires only when it
                // goes; the children's at every waiter that joins.
                let watch = match own_watch {
                    Some(own_watch) => {
                        park(queue);
                        own_watch
                    }
                    None => watch(queue),
                };
                return Ok(Turn::First {
                    waited,
                    watch: Some(watch),
                });
            };
            park(queue);
            if request.wait == Wait::No {
                return Ok(Turn::Contended);
            }
            waited = true;
            let path = format!("{parent}/{before}");
            // Both go out together: the predecessor's watch, and our own
            // node's the first time round.
            let watch_own = own_watch.is_none().then(|| {
                inner.ask(&what, session, |client| {
                    let own_path = own_path.clone();
                    async move { client.check_and_watch_stat(&own_path).await }
                })
            });
            let watch_before = inner.ask(&what, session, |client| {
                let path = path.clone();
                async move { client.check_and_watch_stat(&path).await }
            });
            let (watched_own, (watched, _)) = match watch_own {
                Some(watch_own) => {
                    let (own, before) = tokio::join!(watch_own, watch_before);
                    (Some(own?.0), before?)
                }
                None => (None, watch_before.await?),
            };
            match watched_own {
                Some(Ok((Some(_), watcher))) => own_watch = Some(watch(watcher)),
                Some(Ok((None, _))) => return Ok(Turn::Gone),
                Some(Err(error)) => return Err(inner.error(&what, error)),
                None => {}
            }
            let only = older.len() == 1;
            let watcher = match watched {
                Ok((Some(_), watcher)) => watcher,
                // Gone already: ours is first if it was the only one — and
                // still there. Had it gone meanwhile, its event came before
                // this answer.
                Ok((None, _)) if only => {
                    let Some(mut own_changed) = own_watch.take() else {
                        continue;
                    };
                    match fired(&mut own_changed) {
                        None => {
                            return Ok(Turn::First {
                                waited,
                                watch: Some(own_changed),
                            })
                        }
                        Some(EventType::NodeDeleted) => return Ok(Turn::Gone),
                        // Changed otherwise: list again, watch ours again.
                        Some(_) => continue,
                    }
                }
                Ok((None, _)) => continue,
                Err(error) => return Err(inner.error(&what, error)),
            };
            let Some(mut watching_own) = own_watch.take() else {
                continue;
            };
            let mut before_changed = watch(watcher);
            let woken = async {
                tokio::select! {
                    // Ours first: deleted before its predecessor, the event
                    // of ours came first.
                    biased;
                    event = &mut watching_own => Woken::Own(event.event_type),
                    event = &mut before_changed => Woken::Before(event.event_type),
                }
            };
            let woken = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline.into(), woken).await.ok(),
                None => Some(woken.await),
            };
            match woken {
                None => return Ok(Turn::TimedOut),
                Some(Woken::Own(EventType::NodeDeleted)) => return Ok(Turn::Gone),
                // Our node changed (its data set by someone), or the
                // session ended: list again, and watch ours again.
                Some(Woken::Own(_)) => {}
                Some(Woken::Before(EventType::NodeDeleted)) if only => {
                    return Ok(Turn::First {
                        waited,
                        watch: Some(watching_own),
                    });
                }
                Some(Woken::Before(_)) => own_watch = Some(watching_own),
            }
        }
    }

    /// The grant a claim presents, if it is one of this backend's for its owner.
    fn claimed<'c>(&self, claim: &'c Claim, action: &str) -> Result<&'c Held> {
        let refuse = |why: &str| Error::not_held(BACKEND, action, claim.name.as_str(), why);
        let held = claim
            .handle::<Held>()
            .ok_or_else(|| refuse("this backend never granted that claim"))?;
        if held.owner != claim.owner || u64::try_from(held.czxid).ok() != Some(claim.token.get()) {
            return Err(refuse("the grant is another owner's"));
        }
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(refuse(
                "the backend was closed: its session was closed, and every lock on it lost",
            ));
        }
        Ok(held)
    }
}

/// The lock nodes before `own` among `children`, in sequence order: the
/// last is the one `own` waits for. Empty if `own` is first.
fn older<'c>(children: &'c [String], own: &str) -> Vec<&'c str> {
    let Some(ours) = sequence_of(own) else {
        return Vec::new();
    };
    let mut older: Vec<(i64, &str)> = children
        .iter()
        .filter_map(|child| Some((sequence_of(child)?, child.as_str())))
        .filter(|(sequence, _)| *sequence < ours)
        .collect();
    older.sort_unstable();
    older.into_iter().map(|(_, child)| child).collect()
}

/// Leaves a watch of a queue's children that nothing needs to fire once,
/// unheeded: dropped, it would cost a request to remove it at the server.
/// It fires at the queue's next change, or when the session ends.
fn park(watcher: OneshotWatcher) {
    tokio::spawn(watcher.changed());
}

/// Watches a held node through the watch the acquire left — of the node
/// itself if it waited, else of its queue's children (or none, if the
/// predecessor's deletion granted it): when it fires, or at once without
/// one, unless the node is being released, the queue is listed again and
/// its children watched; a node no longer there was deleted by someone
/// else, and its lease is Lost. So a holder costs no request of its own,
/// or one per waiter that joins; a session that ends ends the watch with
/// it.
fn watch_held(
    inner: &Inner,
    session: &Arc<Session>,
    parent: &str,
    own: &str,
    node: &Arc<Node>,
    watch: Option<Watch>,
) {
    let (session, parent, own) = (Arc::clone(session), parent.to_owned(), own.to_owned());
    let node = Arc::downgrade(node);
    let response_timeout = inner.options.response_timeout;
    let watched = async move {
        let mut pauses = repeat::background_pauses().build();
        let mut queue = watch;
        loop {
            if let Some(watch) = queue.take() {
                let event = watch.await;
                if event.event_type == EventType::Session {
                    return;
                }
            }
            let Some(held) = node.upgrade() else { return };
            if held.releasing.load(Ordering::Acquire) {
                return;
            }
            drop(held);
            let parent = parent.as_str();
            let repeated = request::answered(
                "watch a held lock's queue",
                &session,
                response_timeout,
                |client| async move { client.list_and_watch_children(parent).await },
            )
            .await;
            let Some(held) = node.upgrade() else { return };
            match repeated.outcome {
                Ok(Ok((children, watcher))) if children.contains(&own) => {
                    queue = Some(self::watch(watcher));
                }
                Ok(Ok(_) | Err(ZkError::NoNode)) => return held.gone(),
                // The session ended: its own signal says so.
                Ok(Err(_)) | Err(_) if session.is_ended() => return,
                Ok(Err(_)) | Err(_) => {
                    drop(held);
                    let pause = pauses.next().unwrap_or(Duration::from_millis(500));
                    tokio::time::sleep(pause).await;
                }
            }
        }
    };
    tokio::spawn(watched);
}

/// A lock node an undo deletes: found by its GUID under a parent (its
/// create's answer never came), or at its path.
#[derive(Debug)]
enum Place {
    Guid(String, String),
    Path(String),
}

/// What an undo works on: the backend, the session the node is of, the node.
type Undone = (Arc<Inner>, Arc<Session>, Place);

/// The undo of an acquire whose node may exist: deletes it in the
/// background. Without a runtime nothing can be sent: the node stays until
/// the session ends.
fn undo_node<'a>(
    inner: &'a Arc<Inner>,
    session: &Arc<Session>,
    place: Place,
) -> Undo<'a, Undone, impl UndoStep<Undone>, impl FnOnce(Undone)> {
    Undo::new(
        &inner.background,
        (Arc::clone(inner), Arc::clone(session), place),
        |(inner, session, place): Undone| withdraw(inner, session, place),
        |(_, _, place): Undone| {
            tracing::warn!(
                backend = BACKEND,
                ?place,
                "an acquire was cancelled where no runtime is reachable; its node stays \
                 until the session ends"
            );
        },
    )
}

/// Deletes a node no grant uses. A failure before an answer is tried again,
/// with pauses from 50 ms doubling to 500 ms, for as long as the session
/// lives and the backend is open: a node must not outlive its use while its
/// session is kept alive. (A session that ended, or a backend closed, took
/// the node with it.)
async fn withdraw(inner: Arc<Inner>, session: Arc<Session>, place: Place) {
    let what = "withdraw a node no grant uses";
    let deleted = (|| async {
        let path = match &place {
            Place::Path(path) => path.clone(),
            Place::Guid(parent, guid) => match inner.find(what, &session, parent, guid).await? {
                Some(path) => path,
                None => return Ok(()),
            },
        };
        inner.delete(what, &session, &path).await.map(drop)
    })
    .retry(repeat::background_pauses())
    .sleep(tokio::time::sleep)
    .when(|error| {
        repeat::is_transient(error) && !session.is_ended() && !inner.closed.load(Ordering::Acquire)
    })
    .await;
    if let Err(error) = deleted {
        tracing::debug!(%error, ?place, "gave up deleting a node: its session ended or the backend closed");
    }
}

#[async_trait]
impl LockBackend for ZkBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    /// # Cancel safety
    ///
    /// Dropping the future at any await leaves nothing behind: an [`Undo`]
    /// deletes the node in the background — found by its GUID if the
    /// create's answer had not come; without a runtime, the node goes with
    /// the session.
    async fn acquire(&self, request: AcquireRequest) -> Result<Grant> {
        let inner = &self.inner;
        inner.check_open()?;
        let parent = lock_path(&inner.namespace, &request.name);
        let deadline = match request.wait {
            Wait::Until(deadline) => Some(deadline),
            Wait::No | Wait::Forever => None,
        };
        for _ in 0..ATTEMPTS {
            match self.attempt(&request, &parent, deadline).await? {
                Attempt::Granted(grant) => return Ok(grant),
                Attempt::Vanished => inner.check_open()?,
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            BACKEND,
            format!(
                "acquire `{}`: its node vanished {ATTEMPTS} times before it was granted \
                 (the session ended, or something deletes nodes under `{parent}`)",
                request.name.as_str()
            ),
        )
        .at(inner.ensemble.servers()))
    }

    async fn extend(&self, claim: &Claim, _ttl: Duration) -> Result<Option<Instant>> {
        let inner = &self.inner;
        let held = self.claimed(claim, "extend")?;
        let name = claim.name.as_str();
        let gone = || Error::not_held(BACKEND, "extend", name, "its node is gone");
        if held.node.signal.health() == SessionHealth::Ended || held.session.is_ended() {
            return Err(gone());
        }
        // A heartbeat now: the session's bound, which the lease follows,
        // moves as a TTL lease's would.
        held.session.refresh(inner.options.response_timeout).await;
        let what = format!("extend `{name}`");
        let path = held.path.as_str();
        let (stat, _) = inner
            .ask(&what, &held.session, |client| async move {
                client.check_stat(path).await
            })
            .await?;
        match stat {
            Ok(Some(stat))
                if stat.czxid == held.czxid
                    && stat.ephemeral_owner == held.session.id
                    && !held.session.is_ended() =>
            {
                Ok(None)
            }
            Ok(_) => {
                held.node.gone();
                Err(gone())
            }
            Err(error) => Err(inner.error(&what, error)),
        }
    }

    async fn release(&self, claim: &Claim) -> Result<()> {
        let inner = &self.inner;
        let held = self.claimed(claim, "release")?;
        let name = claim.name.as_str();
        // Marked first, so the delete's own event ends nothing: the lease
        // is being released, not lost.
        let first = !held.node.releasing.swap(true, Ordering::AcqRel);
        if held.session.is_ended() {
            return Err(Error::not_held(
                BACKEND,
                "release",
                name,
                "its session ended, and the node with it",
            ));
        }
        match inner
            .release_node(&format!("release `{name}`"), &held.session, &held.path)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::not_held(
                BACKEND,
                "release",
                name,
                "its node is gone",
            )),
            // Closed meanwhile, or the session ended under the delete: the
            // node went with the session.
            Err(_) if held.session.is_ended() || inner.closed.load(Ordering::Acquire) => {
                Err(Error::not_held(
                    BACKEND,
                    "release",
                    name,
                    "its session ended, and the node with it",
                ))
            }
            Err(error) => {
                // The caller may give up; the node must not stay while the
                // session lives. Deleted in the background until done (or
                // the session ends).
                if first && repeat::is_transient(&error) {
                    let withdrawn = withdraw(
                        Arc::clone(inner),
                        Arc::clone(&held.session),
                        Place::Path(held.path.clone()),
                    );
                    if !inner.background.spawn(withdrawn) {
                        tracing::warn!(
                            path = held.path,
                            "no runtime to delete a node whose release failed"
                        );
                    }
                }
                Err(error)
            }
        }
    }

    /// The holder is the lock node with the lowest sequence — lockkit's or
    /// Curator's alike: its czxid is the token, its `ephemeralOwner` the
    /// holder's session (`ZooKeeper session 0x…`), its ctime (the server's
    /// clock) [`queued_since`](Holder::queued_since). No `since`: ZooKeeper
    /// does not record when the node became first. A node
    /// deleted between the list and its stat is read again from a new list.
    async fn status(&self, name: &LockName) -> Result<LockStatus> {
        let inner = &self.inner;
        inner.check_open()?;
        let session = inner.live_session().await?;
        let parent = lock_path(&inner.namespace, name);
        let what = format!("read the holder of `{name}`");
        // Each round that finds its first node gone saw that node deleted:
        // the queue moved on. A queue that moves on this often while read
        // is reported, not chased for ever.
        for _ in 0..STATUS_READS {
            let Some(children) = inner.children(&what, &session, &parent).await? else {
                return Ok(LockStatus::Free);
            };
            let first = children
                .iter()
                .filter_map(|child| Some((sequence_of(child)?, child)))
                .min();
            let Some((_, first)) = first else {
                return Ok(LockStatus::Free);
            };
            let path = format!("{parent}/{first}");
            let (stat, _) = inner
                .ask(&what, &session, |client| {
                    let path = path.clone();
                    async move { client.check_stat(&path).await }
                })
                .await?;
            let stat = match stat {
                Ok(Some(stat)) => stat,
                Ok(None) => continue,
                Err(error) => return Err(inner.error(&what, error)),
            };
            let mut holder = Holder::new(Expiry::Session);
            holder.token = u64::try_from(stat.czxid).ok().and_then(FencingToken::new);
            // The node's ctime is when it joined the queue, at or before
            // the grant: not the grant time `since` promises.
            holder.queued_since = u64::try_from(stat.ctime)
                .ok()
                .and_then(|millis| UNIX_EPOCH.checked_add(Duration::from_millis(millis)));
            holder.holder = Some(format!("ZooKeeper session {:#x}", stat.ephemeral_owner));
            return Ok(LockStatus::Held(holder));
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            BACKEND,
            format!("{what}: its first node was deleted under each of {STATUS_READS} reads"),
        )
        .at(inner.ensemble.servers()))
    }

    /// The version the first server to answer the `srvr` four-letter word
    /// reports; see [`crate`]'s notes.
    async fn server_version(&self) -> Result<String> {
        let inner = &self.inner;
        inner.check_open()?;
        crate::version::server_version(&inner.ensemble.servers, inner.options.response_timeout)
            .await
    }

    /// Closes the session — the server deletes every node of this client at
    /// once — ends every wait and every lease (Lost). Later calls fail with
    /// a non-retryable `Unavailable`.
    async fn close(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let _establishing = inner.establishing.lock().await;
        let closed = match inner.current_session() {
            Some(session) => session
                .close(inner.options.response_timeout)
                .await
                .map_err(|error| error.at(inner.ensemble.servers())),
            None => Ok(()),
        };
        inner
            .background
            .settle(inner.options.response_timeout)
            .await;
        closed
    }
}
