//! Releases sent together: a delete goes out at once when none is in
//! flight; those that come while one is go out together, as one `multi`,
//! when it answers — a group commit. One task releasing waits no longer
//! than alone; many release for one write of the ensemble instead of one
//! each.
//!
//! A `multi` is all or nothing: when the server refuses one delete of it
//! (a node already gone), it deletes none, and each goes out again alone,
//! so each release gets its own answer.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lockkit_core::Error;
use tokio::sync::oneshot;
use zookeeper_client::Error as ZkError;

use crate::request;
use crate::session::Session;

/// The most deletes in one `multi`, and the most bytes of their paths
/// (ZooKeeper refuses a request over `jute.maxbuffer`, 1 MiB by default).
const MOST: usize = 128;
const MOST_BYTES: usize = 256 * 1024;

/// The deletes waiting for the one in flight.
#[derive(Debug)]
pub(crate) struct Deletes {
    state: Arc<Mutex<State>>,
    response_timeout: Duration,
}

#[derive(Debug, Default)]
struct State {
    /// A delete or a `multi` is in flight: new deletes wait in `queue`.
    sending: bool,
    queue: VecDeque<Deletion>,
}

/// One node to delete, and where its answer goes.
struct Deletion {
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
    /// Not done: the `multi` holding it failed as a whole (or its sender
    /// stopped) — send it alone. `maybe_done`: it may have been applied
    /// before its answer was lost.
    Alone { maybe_done: bool },
}

impl Deletes {
    pub(crate) fn new(response_timeout: Duration) -> Self {
        Self {
            state: Arc::default(),
            response_timeout,
        }
    }

    /// Deletes `path` on `session`: at once if nothing is in flight, else
    /// with the others that wait, when it answers. Dropping the future
    /// does not stop the delete, nor those waiting on it.
    pub(crate) async fn delete(&self, what: &str, session: &Arc<Session>, path: &str) -> Sent {
        let waiting = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.sending {
                let (answer, answered) = oneshot::channel();
                state.queue.push_back(Deletion {
                    what: what.to_owned(),
                    session: Arc::clone(session),
                    path: path.to_owned(),
                    answer,
                });
                Some(answered)
            } else {
                state.sending = true;
                None
            }
        };
        if let Some(answered) = waiting {
            return answered.await.unwrap_or(Sent::Alone { maybe_done: true });
        }
        // Ours goes out alone; those that queue meanwhile go out after it,
        // from a task of their own, even if this future is dropped.
        let _turn = Turn {
            state: Arc::clone(&self.state),
            response_timeout: self.response_timeout,
            next: Next::Drain,
        };
        delete_alone(what, session, path, self.response_timeout).await
    }
}

/// The turn of whoever sends; when it ends, the deletes that queued meanwhile
/// go out from a task ([`drain`]) — or, if it was that task's own turn
/// (cancelled: its runtime shut down), each is told to go alone.
struct Turn {
    state: Arc<Mutex<State>>,
    response_timeout: Duration,
    next: Next,
}

enum Next {
    /// The sender's own delete answered (or it was dropped): a task sends
    /// what queued.
    Drain,
    /// That task was dropped before it sent everything: each goes alone.
    Alone,
    /// That task sent everything, and said nothing is in flight.
    Done,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if matches!(self.next, Next::Done) {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.queue.is_empty() {
            state.sending = false;
            return;
        }
        let runtime = match self.next {
            Next::Drain => tokio::runtime::Handle::try_current().ok(),
            Next::Alone | Next::Done => None,
        };
        match runtime {
            Some(runtime) => {
                drop(state);
                runtime.spawn(drain(Arc::clone(&self.state), self.response_timeout));
            }
            None => {
                state.sending = false;
                // Their answers dropped: each goes alone.
                let queued = std::mem::take(&mut state.queue);
                drop(state);
                drop(queued);
            }
        }
    }
}

/// Sends what queued — everything that came while the last went out — one
/// session's deletes together, until nothing waits.
async fn drain(state: Arc<Mutex<State>>, response_timeout: Duration) {
    let mut turn = Turn {
        state: Arc::clone(&state),
        response_timeout,
        next: Next::Alone,
    };
    loop {
        let batch = {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(first) = state.queue.front() else {
                state.sending = false;
                turn.next = Next::Done;
                return;
            };
            let session = Arc::clone(&first.session);
            let mut bytes = 0;
            let mut batch = Vec::new();
            while let Some(next) = state.queue.front() {
                let full = batch.len() == MOST || bytes + next.path.len() > MOST_BYTES;
                if (full && !batch.is_empty()) || !Arc::ptr_eq(&next.session, &session) {
                    break;
                }
                bytes += next.path.len();
                batch.extend(state.queue.pop_front());
            }
            batch
        };
        send(batch, response_timeout).await;
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

/// Sends deletes of one session: alone if one, else as one `multi`.
async fn send(mut batch: Vec<Deletion>, response_timeout: Duration) {
    if batch.len() == 1 {
        let Some(deletion) = batch.pop() else { return };
        let sent = delete_alone(
            &deletion.what,
            &deletion.session,
            &deletion.path,
            response_timeout,
        )
        .await;
        // The caller may have stopped waiting; the node is deleted anyway.
        let _ = deletion.answer.send(sent);
        return;
    }
    let session = Arc::clone(&batch[0].session);
    let paths: Vec<&str> = batch
        .iter()
        .map(|deletion| deletion.path.as_str())
        .collect();
    let paths = paths.as_slice();
    let what = format!("release {} locks together", batch.len());
    let repeated = request::answered(&what, &session, response_timeout, |client| async move {
        let mut multi = client.new_multi_writer();
        for path in paths {
            multi.add_delete(path, None)?;
        }
        multi.commit().await.map(drop).map_err(ZkError::from)
    })
    .await;
    let maybe_done = repeated.attempts > 1 || repeated.outcome.is_err();
    let done = matches!(repeated.outcome, Ok(Ok(())));
    for deletion in batch {
        let sent = if done {
            Sent::Deleted
        } else {
            Sent::Alone { maybe_done }
        };
        let _ = deletion.answer.send(sent);
    }
}
