//! Releases sent together: a delete goes out at once when none is in
//! flight; those that come while one is go out together, as one `multi`,
//! when it answers — a group commit. One task releasing waits no longer
//! than alone; many release for one write of the ensemble instead of one
//! each.
//!
//! No task of its own sends them: when a delete answers, the callers
//! waiting are woken and the first of them sends everything queued, each
//! on whatever runtime it runs on. A caller that stops waiting leaves its
//! delete to the background ([`Background`]); a sender that stops midway
//! hands each delete it took back to its caller, which sends it alone.
//!
//! A `multi` is all or nothing: when the server refuses one delete of it
//! (a node already gone), it deletes none, and each goes out again alone,
//! so each release gets its own answer.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use lockkit_core::{Background, Error};
use tokio::sync::{oneshot, Notify};
use zookeeper_client::Error as ZkError;

use crate::request;
use crate::session::Session;

/// The most deletes in one `multi`, and the most bytes of their paths
/// (ZooKeeper refuses a request over `jute.maxbuffer`, 1 MiB by default).
const MOST: usize = 128;
const MOST_BYTES: usize = 256 * 1024;

/// The deletes of one backend: the one in flight, and those waiting.
#[derive(Debug)]
pub(crate) struct Deletes {
    shared: Arc<Shared>,
    response_timeout: Duration,
    background: Background,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Told whenever nothing is in flight any more.
    idle: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// A delete or a `multi` is in flight: new deletes wait in `queue`.
    sending: bool,
    queue: VecDeque<Deletion>,
    next_id: u64,
}

/// One node to delete, and where its answer goes.
struct Deletion {
    id: u64,
    what: String,
    session: Arc<Session>,
    path: String,
    answer: oneshot::Sender<Sent>,
}

impl fmt::Debug for Deletion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deletion")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What became of a delete.
pub(crate) enum Sent {
    /// The server deleted the node.
    Deleted,
    /// The server found no node at the path; `repeated`: the delete had
    /// been sent before without an answer, and that one may have deleted it.
    Gone { repeated: bool },
    /// Failed alone: the delete's own error.
    Failed(Error),
    /// Not done: the `multi` holding it failed as a whole, or its sender
    /// stopped — send it alone. `maybe_done`: it may have been applied
    /// before its answer was lost.
    Alone { maybe_done: bool },
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Deletes {
    /// `background` takes the deletes of callers that stop waiting.
    pub(crate) fn new(response_timeout: Duration, background: Background) -> Self {
        Self {
            shared: Arc::default(),
            response_timeout,
            background,
        }
    }

    /// Deletes `path` on `session`: at once if nothing is in flight, else
    /// with the others waiting, as soon as what is in flight answers.
    /// Dropping the future does not stop the delete.
    pub(crate) async fn delete(&self, what: &str, session: &Arc<Session>, path: &str) -> Sent {
        let (answer, mut answered) = oneshot::channel();
        let queued = {
            let mut state = self.shared.lock();
            if state.sending {
                let id = state.next_id;
                state.next_id += 1;
                state.queue.push_back(Deletion {
                    id,
                    what: what.to_owned(),
                    session: Arc::clone(session),
                    path: path.to_owned(),
                    answer,
                });
                Some(id)
            } else {
                state.sending = true;
                None
            }
        };
        let Some(id) = queued else {
            let _sending = Sending(&self.shared);
            return delete_alone(what, session, path, self.response_timeout).await;
        };
        let mut waiting = Waiting {
            deletes: self,
            id,
            waiting: true,
        };
        loop {
            // Set before looking, so that a send that ends in between
            // still wakes us.
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let batch = {
                let mut state = self.shared.lock();
                let ours_waits = state.queue.iter().any(|deletion| deletion.id == id);
                if !state.sending && ours_waits {
                    state.sending = true;
                    Some(take_batch(&mut state.queue))
                } else {
                    None
                }
            };
            if let Some(batch) = batch {
                let _sending = Sending(&self.shared);
                self.send(batch).await;
                continue;
            }
            tokio::select! {
                biased;
                sent = &mut answered => {
                    waiting.waiting = false;
                    // Its sender stopped midway: send it alone.
                    return sent.unwrap_or(Sent::Alone { maybe_done: true });
                }
                () = &mut idle => {}
            }
        }
    }

    /// Sends deletes of one session: alone if one, else as one `multi`.
    async fn send(&self, batch: Vec<Deletion>) {
        let mut batch = Batch {
            deletions: batch,
            deletes: self,
        };
        let response_timeout = self.response_timeout;
        if let [deletion] = batch.deletions.as_slice() {
            let sent = delete_alone(
                &deletion.what,
                &deletion.session,
                &deletion.path,
                response_timeout,
            )
            .await;
            let mut sent = Some(sent);
            batch.answer(|| sent.take().unwrap_or(Sent::Alone { maybe_done: true }));
            return;
        }
        let Some(session) = batch
            .deletions
            .first()
            .map(|first| Arc::clone(&first.session))
        else {
            return;
        };
        let paths: Vec<String> = batch
            .deletions
            .iter()
            .map(|deletion| deletion.path.clone())
            .collect();
        let paths = paths.as_slice();
        let what = format!("release {} locks together", paths.len());
        let repeated = request::answered(&what, &session, response_timeout, |client| async move {
            let mut multi = client.new_multi_writer();
            for path in paths {
                multi.add_delete(path, None)?;
            }
            multi.commit().await.map(drop).map_err(ZkError::from)
        })
        .await;
        let maybe_done = repeated.attempts > 1 || repeated.outcome.is_err();
        if matches!(repeated.outcome, Ok(Ok(()))) {
            batch.answer(|| Sent::Deleted);
        } else {
            batch.answer(|| Sent::Alone { maybe_done });
        }
    }

    /// Deletes a node in the background, its caller gone.
    fn orphan(&self, deletion: Deletion) {
        let response_timeout = self.response_timeout;
        let path = deletion.path.clone();
        let sent = self.background.spawn(async move {
            let _ = delete_alone(
                &deletion.what,
                &deletion.session,
                &deletion.path,
                response_timeout,
            )
            .await;
        });
        if !sent {
            tracing::warn!(
                path,
                "no runtime to delete a node whose release was dropped; it stays until \
                 its session ends"
            );
        }
    }
}

/// The deletes queued first, of one session: what one `multi` takes.
fn take_batch(queue: &mut VecDeque<Deletion>) -> Vec<Deletion> {
    let mut batch: Vec<Deletion> = Vec::new();
    let mut bytes = 0;
    while let Some(next) = queue.front() {
        let full = batch.len() == MOST || bytes + next.path.len() > MOST_BYTES;
        let other_session = batch
            .first()
            .is_some_and(|first| !Arc::ptr_eq(&first.session, &next.session));
        if !batch.is_empty() && (full || other_session) {
            break;
        }
        bytes += next.path.len();
        batch.extend(queue.pop_front());
    }
    batch
}

/// Something is in flight while this lives; when it goes, the callers
/// waiting are told, and the first of them sends what queued.
struct Sending<'a>(&'a Shared);

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.lock().sending = false;
        self.0.idle.notify_waiters();
    }
}

/// A caller whose delete waits in the queue; if it stops waiting, its
/// delete goes out in the background.
struct Waiting<'a> {
    deletes: &'a Deletes,
    id: u64,
    waiting: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.waiting {
            return;
        }
        let mut state = self.deletes.shared.lock();
        let Some(at) = state
            .queue
            .iter()
            .position(|deletion| deletion.id == self.id)
        else {
            // Taken by a sender already: it goes out, or comes back to the
            // orphans below.
            return;
        };
        let orphan = state.queue.remove(at);
        drop(state);
        if let Some(orphan) = orphan {
            self.deletes.orphan(orphan);
        }
    }
}

/// Deletes taken by a sender. Each is answered once sent; those left when
/// it stops midway go back to their callers, to send alone — or, a caller
/// gone, to the background.
struct Batch<'a> {
    deletions: Vec<Deletion>,
    deletes: &'a Deletes,
}

impl Batch<'_> {
    fn answer(&mut self, mut sent: impl FnMut() -> Sent) {
        for deletion in self.deletions.drain(..) {
            // A caller that stopped waiting: its node is deleted anyway.
            let _ = deletion.answer.send(sent());
        }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        for deletion in self.deletions.drain(..) {
            if deletion.answer.is_closed() {
                self.deletes.orphan(deletion);
            }
            // Else dropped unanswered: its caller sends it alone.
        }
    }
}

/// Deletes `path` alone.
async fn delete_alone(
    what: &str,
    session: &Session,
    path: &str,
    response_timeout: Duration,
) -> Sent {
    let repeated = request::answered(what, session, response_timeout, |client| async move {
        client.delete(path, None).await
    })
    .await;
    match repeated.outcome {
        Ok(Ok(())) => Sent::Deleted,
        Ok(Err(ZkError::NoNode)) => Sent::Gone {
            repeated: repeated.attempts > 1,
        },
        Ok(Err(error)) => Sent::Failed(crate::error::from_zk(what, error)),
        Err(error) => Sent::Failed(error),
    }
}
