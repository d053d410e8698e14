//! The session: one ZooKeeper session per backend, every lock node of the
//! backend an ephemeral node of it, and what its holders see of it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use lockkit_core::{
    session_drift, Error, ErrorKind, KeptSession, Result, SessionHealth, SessionWatch,
};
use zookeeper_client::{Acls, Client, CreateMode, SessionState, StateWatcher};

use crate::error::{from_zk, is_session_gone, no_answer, BACKEND};
use crate::options::ZkOptions;
use crate::url::Ensemble;

/// One ZooKeeper session and what its holders see of it.
#[derive(Debug)]
pub(crate) struct Session {
    /// The session id; every lock node of this session has it as its
    /// `ephemeralOwner`.
    pub(crate) id: i64,
    /// The id and password, for a client that attaches to the session.
    pub(crate) info: zookeeper_client::SessionInfo,
    /// The session timeout the ensemble granted.
    timeout: Duration,
    /// The driver's client, under the chroot; `None` once the session
    /// ended or was closed — the last clone dropped closes the session at
    /// the server.
    client: Mutex<Option<Client>>,
    /// The session's states as the driver reports them, for close.
    states: StateWatcher,
    kept: KeptSession,
}

impl Session {
    /// Establishes a session with the ensemble — creating the chroot if it
    /// is missing — and keeps it confirmed in the background until it ends
    /// or [`close`](Self::close) is called.
    pub(crate) async fn establish(ensemble: &Ensemble, options: &ZkOptions) -> Result<Arc<Self>> {
        let what = "establish a session";
        let mut connector = Client::connector().with_session_timeout(options.session_timeout);
        if let Some((user, password)) = &ensemble.user {
            connector = connector.with_auth("digest", format!("{user}:{password}").as_bytes());
        }
        // The connect request goes out after this: the server's session
        // timer starts no earlier.
        let sent = Instant::now();
        let client = tokio::time::timeout(
            options.connect_timeout,
            connector.connect(&ensemble.connect_string()),
        )
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::Unavailable,
                BACKEND,
                format!(
                    "{what}: no server answered within {:?} (connect_timeout): servers down or \
                     unreachable, or the ensemble has no quorum",
                    options.connect_timeout
                ),
            )
        })?
        .map_err(|error| from_zk(what, error))?;
        let client = match &ensemble.chroot {
            None => client,
            Some(root) => {
                let made = tokio::time::timeout(
                    options.response_timeout,
                    client.mkdir(root, &CreateMode::Persistent.with_acls(Acls::anyone_all())),
                )
                .await
                .map_err(|_| {
                    no_answer(
                        format!("create the chroot `{root}`"),
                        options.response_timeout,
                    )
                })?;
                match made {
                    Ok(()) | Err(zookeeper_client::Error::NodeExists) => {}
                    Err(error) => {
                        return Err(from_zk(format!("create the chroot `{root}`"), error))
                    }
                }
                client.chroot(root.as_str()).map_err(|_| {
                    Error::new(
                        ErrorKind::Config,
                        BACKEND,
                        format!("the chroot `{root}` is no valid ZooKeeper path"),
                    )
                })?
            }
        };
        let timeout = client.session_timeout();
        let states = client.state_watcher();
        let session = Arc::new(Self {
            id: client.session_id().0,
            info: client.session().clone(),
            timeout,
            states: states.clone(),
            client: Mutex::new(Some(client)),
            kept: KeptSession::alive_until(sent + timeout.saturating_sub(session_drift(timeout))),
        });
        let keeper = tokio::spawn(keep(Arc::clone(&session), states, options.response_timeout));
        session.kept.kept_by(keeper);
        tracing::debug!(
            session = format_args!("{:#x}", session.id),
            ?timeout,
            "session established"
        );
        Ok(session)
    }

    /// The driver's client, while the session lives.
    pub(crate) fn client(&self) -> Result<Client> {
        self.client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|_| !self.is_ended())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unavailable,
                    BACKEND,
                    "the session ended: every lock on it is lost",
                )
                .with_retryable(false)
            })
    }

    /// A watch for a grant made on this session.
    pub(crate) fn watch(&self) -> SessionWatch {
        self.kept.watch()
    }

    /// Whether the session has ended: expired, closed, or its bound passed
    /// unconfirmed.
    pub(crate) fn is_ended(&self) -> bool {
        self.kept.is_ended()
    }

    /// Sends a heartbeat now and waits up to `within` for its answer;
    /// returns the bound then (moved if it was answered).
    pub(crate) async fn refresh(&self, within: Duration) -> Option<Instant> {
        self.kept.refresh(within).await
    }

    /// The session is gone (expired, or told so by a request): every lease
    /// on it is Lost, and the client goes — if the server still has the
    /// session, it is closed as soon as a server answers.
    pub(crate) fn end(&self) {
        self.kept.end();
        self.client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Closes the session — the server deletes every node of it at once —
    /// and waits up to `within` for the server to confirm; then every lease
    /// on it is Lost.
    pub(crate) async fn close(&self, within: Duration) -> Result<()> {
        self.kept.stop_keeping();
        let mut states = self.states.clone();
        let client = self
            .client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // The last clone of the client gone, the driver sends CloseSession
        // and reports Closed once the server answered it.
        drop(client);
        let closed = tokio::time::timeout(within, async {
            loop {
                let state = states.state();
                if state.is_terminated() {
                    return state;
                }
                states.changed().await;
            }
        })
        .await;
        self.kept.end();
        match closed {
            Ok(_) => Ok(()),
            Err(_) => Err(no_answer("close the session", within)),
        }
    }

    /// A heartbeat sent at `sent` was answered.
    fn confirm(&self, sent: Instant) {
        self.kept.confirm(sent, self.timeout);
    }
}

/// Keeps `session` confirmed: a heartbeat (an `exists` of the chroot) every
/// third of the session timeout, and at once when the driver reconnects,
/// each answer confirming the session until its send instant plus the
/// session timeout, minus the drift. A disconnection, or a heartbeat
/// unanswered, suspends the session (its leases turn Uncertain, Curator's
/// SUSPENDED); an expired or closed session ends it (Lost, Curator's LOST),
/// and so does a bound that passes unconfirmed — then the client is let go,
/// which closes the session as soon as a server answers, since its holders
/// were told it is gone.
async fn keep(session: Arc<Session>, mut states: StateWatcher, response_timeout: Duration) {
    let every = session.timeout / 3;
    let answer_within = (response_timeout / 2).min(every);
    loop {
        let beat = tokio::select! {
            state = states.changed() => match state {
                SessionState::Disconnected => {
                    session.kept.signal().set(SessionHealth::Suspended);
                    false
                }
                SessionState::SyncConnected | SessionState::ConnectedReadOnly => true,
                SessionState::Expired | SessionState::Closed | SessionState::AuthFailed => {
                    tracing::warn!(
                        session = format_args!("{:#x}", session.id),
                        %state,
                        "the session is gone: every lock on it is lost"
                    );
                    break;
                }
            },
            () = tokio::time::sleep(every) => true,
            () = session.kept.asked() => true,
        };
        if beat {
            let Ok(client) = session.client() else {
                break;
            };
            let sent = Instant::now();
            match tokio::time::timeout(answer_within, client.check_stat("/")).await {
                Ok(Ok(_)) => session.confirm(sent),
                Ok(Err(error)) if is_session_gone(&error) => break,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "session heartbeat failed");
                    session.kept.signal().set(SessionHealth::Suspended);
                }
                Err(_) => session.kept.signal().set(SessionHealth::Suspended),
            }
        }
        if session.is_ended() {
            break;
        }
    }
    session.kept.signal().end();
    session
        .client
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
}
