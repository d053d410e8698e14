//! The session lease: one etcd lease per backend, kept alive in the
//! background, that every lock key of the backend is attached to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};
use lockkit_core::{repeat, session_drift, KeptSession, Result, SessionHealth, SessionWatch};

use crate::affinity::Affinity;
use crate::error::{from_etcd, is_lease_gone, no_answer};
use crate::request;

/// The TTL a bound may count on: what the server answered, but never more
/// than was asked for (a member may raise a short TTL to its minimum).
fn granted_ttl(answered_seconds: i64, asked: Duration) -> Duration {
    match u64::try_from(answered_seconds) {
        Ok(seconds) if seconds > 0 => Duration::from_secs(seconds).min(asked),
        _ => asked,
    }
}

/// One session lease and what its holders see of it.
#[derive(Debug)]
pub(crate) struct Session {
    /// The lease id; every lock key of this session ends with it in hex.
    pub(crate) id: i64,
    /// The TTL the server granted.
    ttl: Duration,
    kept: KeptSession,
}

impl Session {
    /// Grants a lease of `ttl` and keeps it alive in the background until
    /// it ends or [`close`](Self::close) is called.
    pub(crate) async fn grant(
        client: &Client,
        affinity: &Arc<Affinity>,
        ttl: Duration,
        response_timeout: Duration,
    ) -> Result<Arc<Self>> {
        let what = "grant the session lease";
        let seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        // The first attempt's send: a later one's answer is no earlier.
        let sent = Instant::now();
        let granted = request::answer(what, response_timeout, affinity, || {
            let mut leases = client.lease_client();
            async move { leases.grant(seconds, None).await }
        })
        .await?;
        if !granted.error().is_empty() {
            return Err(lockkit_core::Error::new(
                lockkit_core::ErrorKind::Backend,
                crate::error::BACKEND,
                format!("{what}: {}", granted.error()),
            ));
        }
        let ttl = granted_ttl(granted.ttl(), ttl);
        let session = Arc::new(Self {
            id: granted.id(),
            ttl,
            kept: KeptSession::alive_until(sent + ttl.saturating_sub(session_drift(ttl))),
        });
        let keeper = tokio::spawn(keep_alive(
            client.clone(),
            Arc::clone(affinity),
            Arc::clone(&session),
            response_timeout,
        ));
        session.kept.kept_by(keeper);
        tracing::debug!(
            lease = format_args!("{:x}", session.id),
            ?ttl,
            "session lease granted"
        );
        Ok(session)
    }

    /// A watch for a grant made on this session.
    pub(crate) fn watch(&self) -> SessionWatch {
        self.kept.watch()
    }

    /// Whether the session has ended: its lease expired, was revoked, or
    /// its bound passed unconfirmed.
    pub(crate) fn is_ended(&self) -> bool {
        self.kept.is_ended()
    }

    /// Sends a keep-alive now and waits up to `within` for its answer;
    /// returns the bound then (moved if it was answered).
    pub(crate) async fn refresh(&self, within: Duration) -> Option<Instant> {
        self.kept.refresh(within).await
    }

    /// The lease is gone at the server: every lease on it is Lost.
    pub(crate) fn end(&self) {
        self.kept.end();
    }

    /// Revokes the lease — the server deletes every key on it at once —
    /// and ends the session.
    pub(crate) async fn close(
        &self,
        client: &Client,
        affinity: &Affinity,
        response_timeout: Duration,
    ) -> Result<()> {
        self.kept.stop_keeping();
        let id = self.id;
        let revoked = request::answer(
            "revoke the session lease",
            response_timeout,
            affinity,
            || {
                let mut leases = client.lease_client();
                async move {
                    match leases.revoke(id).await {
                        // Gone already: nothing left to revoke.
                        Err(error) if is_lease_gone(&error) => Ok(()),
                        other => other.map(drop),
                    }
                }
            },
        )
        .await;
        self.kept.end();
        revoked
    }
}

/// Keeps `session`'s lease alive: a keep-alive every third of its TTL on
/// one stream, each answer confirming the session until its send instant
/// plus the TTL, minus the drift. A stream that breaks or goes unanswered
/// suspends the session (its leases turn Uncertain) and is opened again;
/// a lease the server no longer has ends it (Lost), and so does a bound
/// that passes unconfirmed — then the lease is revoked as soon as a member
/// answers, since its holders have been told it is gone.
async fn keep_alive(
    client: Client,
    affinity: Arc<Affinity>,
    session: Arc<Session>,
    response_timeout: Duration,
) {
    let every = session.ttl / 3;
    // Half the response timeout, as every request's attempt: a hung member
    // is left for another in time to confirm the session before its bound.
    let answer_within = (response_timeout / 2).min(every);
    let mut pauses = request::fresh_pauses();
    loop {
        if session.is_ended() {
            break;
        }
        let sent = Instant::now();
        let opened =
            tokio::time::timeout(answer_within, client.lease_client().keep_alive(session.id)).await;
        let (keeper, stream) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(error)) if is_lease_gone(&error) => {
                tracing::warn!(
                    lease = format_args!("{:x}", session.id),
                    "the session lease is gone at the server: every lock on it is lost"
                );
                session.kept.signal().end();
                return;
            }
            outcome => {
                if let Ok(Err(error)) = outcome {
                    tracing::debug!(%error, "session keep-alive stream could not be opened");
                }
                session.kept.signal().set(SessionHealth::Suspended);
                affinity.spread().await;
                request::pause(&mut pauses).await;
                continue;
            }
        };
        session.confirm(sent, session.ttl);
        pauses = request::fresh_pauses();
        match keep_on(&session, keeper, stream, every, answer_within).await {
            Kept::Gone => {
                tracing::warn!(
                    lease = format_args!("{:x}", session.id),
                    "the session lease is gone at the server: every lock on it is lost"
                );
                session.kept.signal().end();
                return;
            }
            Kept::Broken => {
                session.kept.signal().set(SessionHealth::Suspended);
                affinity.spread().await;
            }
        }
    }
    // The bound passed unconfirmed: the holders were told their locks are
    // lost, so the server must not keep them. Revoke the lease once a
    // member answers, for as long as it may still live there.
    session.kept.signal().end();
    let id = session.id;
    let revoked = repeat::until_answered(Instant::now() + session.ttl, || {
        let mut leases = client.lease_client();
        async move {
            match tokio::time::timeout(answer_within, leases.revoke(id)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) if is_lease_gone(&error) => Ok(()),
                Ok(Err(error)) => Err(from_etcd("revoke an ended session lease", error)),
                Err(_) => Err(no_answer("revoke an ended session lease", answer_within)),
            }
        }
    })
    .await;
    if let Err(error) = revoked.outcome {
        tracing::debug!(%error, "an ended session lease was not revoked; it expires at the server");
    }
}

enum Kept {
    /// The server answered that the lease is gone.
    Gone,
    /// The stream broke or went unanswered.
    Broken,
}

async fn keep_on(
    session: &Session,
    mut keeper: LeaseKeeper,
    mut stream: LeaseKeepAliveStream,
    every: Duration,
    answer_within: Duration,
) -> Kept {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = session.kept.asked() => {}
        }
        let sent = Instant::now();
        if keeper.keep_alive().await.is_err() {
            return Kept::Broken;
        }
        match tokio::time::timeout(answer_within, stream.message()).await {
            Ok(Ok(Some(answer))) if answer.ttl() > 0 => {
                session.confirm(sent, granted_ttl(answer.ttl(), session.ttl));
            }
            Ok(Ok(Some(_))) => return Kept::Gone,
            Ok(Err(error)) if is_lease_gone(&error) => return Kept::Gone,
            _ => return Kept::Broken,
        }
    }
}

impl Session {
    /// A keep-alive sent at `sent` was answered with `ttl` left.
    fn confirm(&self, sent: Instant, ttl: Duration) {
        self.kept.confirm(sent, ttl);
    }
}
