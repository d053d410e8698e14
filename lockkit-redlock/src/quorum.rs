//! Asking every node at once and counting the answers: the one shape of
//! every Redlock step (acquire, write-back, extend, release).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};

/// One node's answer, tagged with the node's index.
pub(crate) type Reply<T> = Pin<Box<dyn Future<Output = (usize, T)> + Send>>;

/// The answers of one round: what came in time, and the replies still
/// under way (to finish in the background).
pub(crate) struct Round<T> {
    /// By node index; `None` for a node that has not answered (yet).
    pub(crate) answers: Vec<Option<T>>,
    pub(crate) pending: FuturesUnordered<Reply<T>>,
}

impl<T: Send + 'static> Round<T> {
    /// No answers yet from any of `nodes`.
    pub(crate) fn unanswered(nodes: usize) -> Vec<Option<T>> {
        (0..nodes).map(|_| None).collect()
    }

    /// Sends one request per node (each future is one node's request,
    /// already tagged; `answers` holds those known already), and gathers answers until `decided` says the
    /// outcome is known, or a node's time is up: `patience` after the first
    /// answer came (or after `sent`, while none has), and never past `end`.
    ///
    /// Patience counts from the first answer, not from the send, so a
    /// client too busy to read its replies in time (a burst of acquires on
    /// a loaded machine) does not count every node as failed: a node is
    /// late when it answers `patience` after the fastest one.
    pub(crate) async fn gather(
        answers: Vec<Option<T>>,
        requests: impl IntoIterator<Item = Reply<T>>,
        (sent, patience, end): (Instant, Duration, Instant),
        decided: impl Fn(&[Option<T>]) -> bool,
    ) -> Self {
        let mut round = Self {
            answers,
            pending: requests.into_iter().collect(),
        };
        let timer = tokio::time::sleep_until((sent + patience).min(end).into());
        tokio::pin!(timer);
        let mut first = true;
        while !decided(&round.answers) {
            tokio::select! {
                biased;
                answer = round.pending.next() => match answer {
                    Some((index, answer)) => {
                        round.answers[index] = Some(answer);
                        if std::mem::take(&mut first) {
                            let later = (Instant::now() + patience)
                                .min(end)
                                .max(timer.deadline().into_std());
                            timer.as_mut().reset(later.into());
                        }
                    }
                    None => break,
                },
                () = &mut timer => break,
            }
        }
        round
    }

    /// How many answers satisfy `test`.
    pub(crate) fn count(&self, test: impl Fn(&T) -> bool) -> usize {
        self.answers
            .iter()
            .flatten()
            .filter(|answer| test(answer))
            .count()
    }
}

/// The replies still under way, each handed to `each` as it comes; runs
/// until the last has come (each is bounded by the node's reply timeout).
pub(crate) async fn finish<T, F, Fut>(mut pending: FuturesUnordered<Reply<T>>, each: F)
where
    F: Fn(usize, T) -> Fut,
    Fut: Future<Output = ()>,
{
    while let Some((index, answer)) = pending.next().await {
        each(index, answer).await;
    }
}
