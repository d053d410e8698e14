//! One watch per backend: every delete under the namespace, from one gRPC
//! stream, tells the grants whose key went and the waiters whose keys
//! ahead went.
//!
//! The watch is opened *from now* and is created before any grant or wait
//! relies on it, so no delete is served from etcd 3.4's 100 ms loop for
//! watches of a past revision. A grant registers its key before its
//! acquire's transaction is sent; a waiter registers the keys ahead of its
//! own before it reads which of them still exist. So a delete is
//! either seen by that transaction or check, or delivered here — never
//! missed. When the stream breaks, every grant is Uncertain (the watch's own
//! signal is suspended) until a new watch is created and one read of the
//! namespace tells which keys went meanwhile; every waiter checks again.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, EventType, GetOptions, WatchFilterType, WatchOptions, WatchRequestSender,
    WatchResponseStream,
};
use lockkit_core::{Result, SessionHealth, SessionSignal, SessionWatch};
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::task::JoinHandle;

use crate::affinity::Affinity;
use crate::request;

/// How a grant's key stands once its create revision is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Granted {
    /// No delete of it was seen; the watch was synced throughout.
    Live,
    /// It was deleted after it was created.
    Deleted,
    /// The watch was resynced since the key was registered: a delete may
    /// have gone unseen. Read the key to know.
    Unsure,
}

/// The deletes of one namespace, as one watch delivers them.
#[derive(Debug)]
pub(crate) struct Deletions {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    table: Mutex<Table>,
    /// Alive while the watch is created and synced; Suspended while it is
    /// being opened again.
    health: SessionSignal,
    /// Set by [`Deletions::stop`]: nothing will be delivered any more.
    stopped: AtomicBool,
}

#[derive(Debug, Default)]
struct Table {
    held: HashMap<String, Holding>,
    /// Each waiter's keys still standing before its own.
    waiters: HashMap<u64, Waiter>,
    /// Which waiters wait for the delete of a key.
    waiting: HashMap<String, Vec<u64>>,
    /// Counts resyncs: a registration older than the last one may have
    /// missed a delete.
    epoch: u64,
    next_waiter: u64,
}

/// A key this backend holds or queues with.
#[derive(Debug)]
struct Holding {
    /// Its create revision, once the acquire's transaction answered.
    create_revision: Option<i64>,
    /// The latest delete of it seen before its create revision was known.
    deleted_at: i64,
    signal: Arc<SessionSignal>,
    /// The name's local gate, given back with the key.
    _gate: OwnedSemaphorePermit,
    epoch: u64,
    /// Its holder is releasing it: a delete ends nothing.
    releasing: bool,
}

/// A waiter: the keys before its own it has not seen deleted yet.
#[derive(Debug)]
struct Waiter {
    /// The waiter's own key: its delete wakes the waiter too.
    own: String,
    /// Key → its create revision: only a later delete counts.
    outstanding: HashMap<String, i64>,
    wake: Arc<Notify>,
    cleared: Arc<AtomicBool>,
}

/// A key ahead of a waiter's own in its queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Place {
    pub(crate) key: String,
    pub(crate) revision: i64,
}

/// A waiter's registration, to wait on and to withdraw.
#[derive(Debug)]
pub(crate) struct Interest {
    shared: Arc<Shared>,
    id: u64,
    /// The keys registered, as given.
    registered: HashSet<String>,
    /// Notified when every outstanding key was seen deleted, or the watch
    /// was opened again (then `cleared` stays false).
    pub(crate) wake: Arc<Notify>,
    cleared: Arc<AtomicBool>,
}

impl Interest {
    /// Whether every key it waited for was seen deleted.
    pub(crate) fn cleared(&self) -> bool {
        self.cleared.load(Ordering::Acquire)
    }
}

impl Drop for Interest {
    /// Withdraws the registration, delivered or not, however the wait ended.
    fn drop(&mut self) {
        let mut table = self.shared.table();
        table.waiters.remove(&self.id);
        for key in &self.registered {
            if let Some(ids) = table.waiting.get_mut(key) {
                ids.retain(|id| *id != self.id);
                if ids.is_empty() {
                    table.waiting.remove(key);
                }
            }
        }
    }
}

/// What a read of the queue leaves of a waiter's interest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Narrowed {
    /// Every key the read found before ours has been seen deleted since.
    AllGone,
    /// Some are still there; wait for the wake.
    Waiting,
    /// The read found a key before ours that is not registered: register
    /// what the read found, and read again.
    Missing,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Deletions {
    /// Opens the watch of every delete under `prefix` and waits until the
    /// server created it.
    pub(crate) async fn start(
        client: &Client,
        affinity: &Arc<Affinity>,
        prefix: String,
        check_every: Duration,
        response_timeout: Duration,
    ) -> Result<Self> {
        let stream = open(client, affinity, &prefix, response_timeout).await?;
        let shared = Arc::new(Shared {
            table: Mutex::new(Table::default()),
            health: SessionSignal::new(),
            stopped: AtomicBool::new(false),
        });
        let task = tokio::spawn(follow(
            client.clone(),
            Arc::clone(affinity),
            prefix,
            Arc::clone(&shared),
            stream,
            check_every,
            response_timeout,
        ));
        Ok(Self { shared, task })
    }

    /// The watch's own signal, for every grant: Uncertain while it is down.
    pub(crate) fn watch(&self) -> SessionWatch {
        self.shared.health.watch()
    }

    /// Registers `key`, about to be put, holding the name's `gate`; the
    /// signal ends when a delete of the key after its create revision is seen.
    pub(crate) fn hold(&self, key: &str, gate: OwnedSemaphorePermit) -> Arc<SessionSignal> {
        let signal = Arc::new(SessionSignal::new());
        let mut table = self.shared.table();
        let epoch = table.epoch;
        table.held.insert(
            key.to_owned(),
            Holding {
                create_revision: None,
                deleted_at: 0,
                signal: Arc::clone(&signal),
                _gate: gate,
                epoch,
                releasing: false,
            },
        );
        signal
    }

    /// Records `key`'s create revision.
    pub(crate) fn created(&self, key: &str, revision: i64) -> Granted {
        let mut table = self.shared.table();
        let epoch = table.epoch;
        let Some(holding) = table.held.get_mut(key) else {
            return Granted::Deleted;
        };
        holding.create_revision = Some(revision);
        if holding.deleted_at > revision {
            holding.signal.end();
            table.held.remove(key);
            return Granted::Deleted;
        }
        if holding.epoch != epoch {
            holding.epoch = epoch;
            return Granted::Unsure;
        }
        Granted::Live
    }

    /// Forgets `key` as registered with create revision `revision` (`None`:
    /// before its transaction answered): it was released, or never put.
    /// Gives its gate back. A newer registration of the key is left alone.
    pub(crate) fn forget(&self, key: &str, revision: Option<i64>) {
        let mut table = self.shared.table();
        if table
            .held
            .get(key)
            .is_some_and(|holding| holding.create_revision == revision)
        {
            table.held.remove(key);
        }
    }

    /// The holder of `key` at `revision` is releasing it: its delete, when
    /// seen, forgets it without ending its grant. Whether this is the first
    /// release of it.
    pub(crate) fn releasing(&self, key: &str, revision: i64) -> bool {
        match self.shared.table().held.get_mut(key) {
            Some(holding) if holding.create_revision == Some(revision) => {
                !std::mem::replace(&mut holding.releasing, true)
            }
            _ => false,
        }
    }

    /// Ends the grant of `key` at `revision` (found deleted) and forgets it.
    pub(crate) fn lost(&self, key: &str, revision: i64) {
        let mut table = self.shared.table();
        if table
            .held
            .get(key)
            .is_some_and(|holding| holding.create_revision == Some(revision))
        {
            if let Some(holding) = table.held.remove(key) {
                holding.signal.end();
            }
        }
    }

    /// Whether `key` is held at `revision` as far as the watch has seen.
    pub(crate) fn is_held(&self, key: &str, revision: i64) -> bool {
        self.shared.table().held.get(key).is_some_and(|holding| {
            holding.create_revision == Some(revision)
                && holding.signal.health() != SessionHealth::Ended
        })
    }

    /// Registers interest in the deletes of `places`, the keys before the
    /// waiter's `own`; its wake comes when all of them were seen deleted, or
    /// its own key was. Dropping the interest withdraws it.
    pub(crate) fn await_deletes(&self, own: &str, places: &[Place]) -> Interest {
        let wake = Arc::new(Notify::new());
        let cleared = Arc::new(AtomicBool::new(false));
        if self.shared.stopped.load(Ordering::Acquire) {
            // Nothing will be delivered: wake at once, to find it closed.
            wake.notify_one();
        }
        let mut table = self.shared.table();
        table.next_waiter += 1;
        let id = table.next_waiter;
        for place in places {
            table.waiting.entry(place.key.clone()).or_default().push(id);
        }
        table.waiters.insert(
            id,
            Waiter {
                own: own.to_owned(),
                outstanding: places
                    .iter()
                    .map(|place| (place.key.clone(), place.revision))
                    .collect(),
                wake: Arc::clone(&wake),
                cleared: Arc::clone(&cleared),
            },
        );
        Interest {
            shared: Arc::clone(&self.shared),
            id,
            registered: places.iter().map(|place| place.key.clone()).collect(),
            wake,
            cleared,
        }
    }

    /// Keeps of `interest` only the keys a read found before the waiter's
    /// own (`current`): any other went before the read.
    pub(crate) fn narrow(&self, interest: &Interest, current: &[Place]) -> Narrowed {
        if current
            .iter()
            .any(|place| !interest.registered.contains(&place.key))
        {
            return Narrowed::Missing;
        }
        let mut table = self.shared.table();
        let Some(waiter) = table.waiters.get_mut(&interest.id) else {
            return Narrowed::Missing;
        };
        waiter
            .outstanding
            .retain(|key, _| current.iter().any(|place| &place.key == key));
        if waiter.outstanding.is_empty() {
            Narrowed::AllGone
        } else {
            Narrowed::Waiting
        }
    }

    /// Whether the watch vouches that `key` still stands at `revision`: it
    /// is synced now, has been since the key's registration or checked the
    /// key when it was opened again, and saw no delete of it. The watch
    /// delivers deletes in revision order, so after the delete of the last
    /// key before it, this says the key stood at that delete's revision.
    pub(crate) fn vouches(&self, key: &str, revision: i64) -> bool {
        self.shared.health.health() == SessionHealth::Alive && self.is_held(key, revision)
    }

    /// How many keys this backend holds or queues with now.
    pub(crate) fn held(&self) -> usize {
        self.shared.table().held.len()
    }

    /// Stops the watch: every grant's watch signal ends.
    pub(crate) fn stop(&self) {
        self.shared.stopped.store(true, Ordering::Release);
        self.task.abort();
        self.shared.health.end();
        let mut table = self.shared.table();
        for (_, holding) in table.held.drain() {
            holding.signal.end();
        }
        table.waiting.clear();
        for (_, waiter) in table.waiters.drain() {
            waiter.wake.notify_one();
        }
    }
}

impl Drop for Deletions {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The watch stream, split so progress requests go out while answers come in.
type Stream = (WatchRequestSender, WatchResponseStream);

/// Opens the watch of every delete under `prefix`, from now, and waits for
/// the server to create it.
async fn open(
    client: &Client,
    affinity: &Affinity,
    prefix: &str,
    response_timeout: Duration,
) -> Result<Stream> {
    let what = format!("watch `{prefix}`");
    request::answer(&what, response_timeout, affinity, || {
        let (mut watches, prefix) = (client.watch_client(), prefix.to_owned());
        async move {
            let options = WatchOptions::new()
                .with_prefix()
                .with_filters([WatchFilterType::NoPut])
                .with_fragment();
            let (sender, mut answers) = watches.watch(prefix, Some(options)).await?.split();
            match answers.message().await? {
                Some(answer) if answer.created() && !answer.canceled() => Ok((sender, answers)),
                Some(answer) => Err(etcd_client::Error::WatchError(format!(
                    "not created ({})",
                    answer.cancel_reason()
                ))),
                None => Err(etcd_client::Error::WatchError(
                    "the stream closed before the watch was created".to_owned(),
                )),
            }
        }
    })
    .await
}

/// Delivers the deletes of the watch, opening it again whenever it breaks.
async fn follow(
    client: Client,
    affinity: Arc<Affinity>,
    prefix: String,
    shared: Arc<Shared>,
    mut stream: Stream,
    check_every: Duration,
    response_timeout: Duration,
) {
    let mut pauses = request::fresh_pauses();
    loop {
        let why = deliver(&shared, &mut stream, check_every, response_timeout).await;
        tracing::debug!(%why, "the delete watch broke; opening it again");
        shared.health.set(SessionHealth::Suspended);
        affinity.spread().await;
        loop {
            match reopen(&client, &affinity, &prefix, &shared, response_timeout).await {
                Ok(reopened) => {
                    stream = reopened;
                    pauses = request::fresh_pauses();
                    break;
                }
                Err(error) => {
                    tracing::debug!(%error, "the delete watch could not be opened again");
                    request::pause(&mut pauses).await;
                }
            }
        }
        shared.health.set(SessionHealth::Alive);
    }
}

/// Delivers answers until the stream breaks, goes silent past a progress
/// request, or is cancelled; says why.
async fn deliver(
    shared: &Shared,
    (sender, answers): &mut Stream,
    check_every: Duration,
    response_timeout: Duration,
) -> String {
    let mut heard = Instant::now();
    let mut asked: Option<Instant> = None;
    loop {
        let check = match asked {
            Some(at) => at + response_timeout,
            None => heard + check_every,
        };
        tokio::select! {
            answer = answers.message() => match answer {
                Ok(Some(answer)) if answer.canceled() => {
                    return format!("cancelled by the server ({})", answer.cancel_reason());
                }
                Ok(Some(answer)) => {
                    heard = Instant::now();
                    asked = None;
                    let mut table = shared.table();
                    for event in answer.events() {
                        if event.event_type() != EventType::Delete {
                            continue;
                        }
                        let Some(kv) = event.kv() else { continue };
                        let Ok(key) = kv.key_str() else { continue };
                        table.deleted(key, kv.mod_revision());
                    }
                }
                Ok(None) => return "the stream ended".to_owned(),
                Err(error) => return error.to_string(),
            },
            () = tokio::time::sleep_until(check.into()) => {
                if asked.is_some() {
                    return format!("no answer to a progress request within {response_timeout:?}");
                }
                if sender.request_progress().await.is_err() {
                    return "the stream's sender closed".to_owned();
                }
                asked = Some(Instant::now());
            }
        }
    }
}

impl Table {
    /// Wakes the waiter whose own key is `key`: it is gone, and the waiter
    /// finds so when it reads its queue again.
    fn wake_owner(&self, key: &str) {
        for waiter in self.waiters.values().filter(|waiter| waiter.own == key) {
            waiter.wake.notify_one();
        }
    }

    /// `key` was deleted at `revision`.
    fn deleted(&mut self, key: &str, revision: i64) {
        if let Some(holding) = self.held.get_mut(key) {
            match holding.create_revision {
                Some(created) if revision > created => {
                    if !holding.releasing {
                        holding.signal.end();
                    }
                    self.held.remove(key);
                    self.wake_owner(key);
                }
                Some(_) => {}
                None => holding.deleted_at = holding.deleted_at.max(revision),
            }
        }
        let Some(ids) = self.waiting.get(key) else {
            return;
        };
        for id in ids {
            let Some(waiter) = self.waiters.get_mut(id) else {
                continue;
            };
            if waiter
                .outstanding
                .get(key)
                .is_some_and(|after| revision > *after)
            {
                waiter.outstanding.remove(key);
                if waiter.outstanding.is_empty() {
                    waiter.cleared.store(true, Ordering::Release);
                    waiter.wake.notify_one();
                }
            }
        }
    }
}

/// Opens the watch again and resyncs: every waiter checks again, and every
/// key held at a known revision is read once, the missing ones lost.
async fn reopen(
    client: &Client,
    affinity: &Affinity,
    prefix: &str,
    shared: &Shared,
    response_timeout: Duration,
) -> Result<Stream> {
    let stream = open(client, affinity, prefix, response_timeout).await?;
    {
        let mut table = shared.table();
        table.epoch += 1;
        // Every waiter reads its queue again.
        for waiter in table.waiters.values() {
            waiter.wake.notify_one();
        }
    }
    let what = format!("read `{prefix}` after the watch was opened again");
    let read = request::answer(&what, response_timeout, affinity, || {
        let (mut kv, prefix) = (client.kv_client(), prefix.to_owned());
        async move {
            kv.get(
                prefix,
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await
        }
    })
    .await?;
    let at = read.header().map_or(0, |header| header.revision());
    let present: HashMap<&[u8], i64> = read
        .kvs()
        .iter()
        .map(|kv| (kv.key(), kv.create_revision()))
        .collect();
    let mut table = shared.table();
    let mut ended = Vec::new();
    // A key created after the read is not in it, and not gone: only keys
    // created at or before the read's revision are judged by it.
    table
        .held
        .retain(|key, holding| match holding.create_revision {
            Some(created) if created <= at && present.get(key.as_bytes()) != Some(&created) => {
                holding.signal.end();
                ended.push(key.clone());
                false
            }
            _ => true,
        });
    for key in ended {
        table.wake_owner(&key);
    }
    Ok(stream)
}
