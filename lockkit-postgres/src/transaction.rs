//! Lock and work in one transaction: `pg_advisory_xact_lock`, held until
//! the transaction ends, with the writes it protects.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};

use lockkit_core::{Background, Error, ErrorKind, FencingToken, LockName, Result, Undo, Wait};

use crate::error::{from_postgres, is_lock_timeout, BACKEND};
use crate::pool::{Pool, Pooled};
use crate::session::{Purpose, Session, Target};

/// What locked transactions need of their backend, and nothing more: where
/// to connect, their own pool of connections, where a cancelled begin is
/// undone, and whether the backend was closed.
pub(crate) struct Transactions {
    target: Target,
    pool: Pool,
    background: Background,
    closed: AtomicBool,
}

impl Transactions {
    /// Up to `size` transactions open at once on `target`.
    pub(crate) fn new(target: Target, size: usize, background: Background) -> Self {
        Self {
            target,
            pool: Pool::new(size, "transaction", Purpose::Transactions),
            background,
            closed: AtomicBool::new(false),
        }
    }

    /// Refuses every later begin.
    pub(crate) fn refuse(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Closes every transaction connection, open transactions' too: the
    /// server rolls them back.
    pub(crate) fn close(&self) {
        self.refuse();
        self.pool.close();
    }

    /// How many transaction connections are open.
    pub(crate) fn open(&self) -> usize {
        self.pool.open()
    }
}

/// An open transaction that holds a lock.
///
/// Made by [`PostgresBackend::transaction`](crate::PostgresBackend::transaction)
/// or [`try_transaction`](crate::PostgresBackend::try_transaction). Run
/// the protected work through [`client`](Self::client): every statement is
/// part of the transaction, which holds the lock (taken with
/// `pg_advisory_xact_lock`) until [`commit`](Self::commit) or
/// [`rollback`](Self::rollback). The lock and the writes therefore end
/// together: no window in which the writes are committed and the lock is
/// still held, or the lock is gone and the writes are not yet committed.
///
/// The lock excludes session locks of the same name taken through
/// [`Locker`](lockkit_core::Locker) on this backend, and the
/// [`fencing_token`](Self::fencing_token) comes from the same sequence.
///
/// Dropped without `commit`, the transaction is rolled back (in the
/// background). Do not run `COMMIT` or `ROLLBACK` yourself through the client.
pub struct LockedTransaction {
    transactions: Arc<Transactions>,
    /// `None` once committed or rolled back.
    connection: Option<Pooled>,
    name: String,
    token: FencingToken,
}

impl LockedTransaction {
    /// Begins a transaction and takes `key` in it: without waiting if
    /// `wait` is `None` (`Contended` if held), else up to `wait` (`Timeout`).
    pub(crate) async fn begin(
        inner: Arc<Transactions>,
        name: &LockName,
        key: i64,
        wait: Option<Duration>,
    ) -> Result<Self> {
        if inner.closed.load(Ordering::Acquire) {
            return Err(inner.target.closed());
        }
        let name = name.as_str();
        let server = inner.target.server.clone();
        let deadline = wait.map(Wait::at_most);
        let timeout = || {
            Error::timeout(BACKEND, "lock in a transaction", name, "its holder kept it").at(&server)
        };
        // Waiting for a connection is the client's own limit, not the
        // lock's holder: a deadline reached there says so.
        let no_connection = || {
            Error::new(
                ErrorKind::Timeout,
                BACKEND,
                format!(
                    "{server}: no transaction connection came free before the deadline for \
                     lock `{name}`: all max_transactions = {} locked transactions are open. \
                     Raise [postgres] max_transactions, or end transactions sooner",
                    inner.pool.size()
                ),
            )
        };
        let slot = match deadline {
            Some(Wait::Until(deadline)) => {
                tokio::time::timeout_at(deadline.into(), inner.pool.slot(&inner.target))
                    .await
                    .map_err(|_| no_connection())??
            }
            _ => inner.pool.slot(&inner.target).await?,
        };
        let pooled = inner.pool.fill(slot, &inner.target).await?;
        let wait = match deadline {
            None => None,
            Some(Wait::Until(deadline)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left < Duration::from_millis(1) {
                    inner.pool.put(pooled);
                    return Err(timeout());
                }
                Some(Some(left))
            }
            Some(_) => Some(None),
        };
        // From here until the lock is ours, a cancelled begin cancels the
        // wait and drops the connection: the server ends the transaction
        // and any lock it got.
        let session = Arc::clone(&pooled.session);
        let abandon = Undo::new(
            &inner.background,
            (Arc::clone(&inner), pooled),
            |(inner, pooled): (Arc<Transactions>, Pooled)| {
                pooled.session.end();
                let tls = inner.target.tls.clone();
                async move {
                    pooled.session.cancel(tls).await;
                    drop(pooled);
                }
            },
            // Without a runtime the connection just closes, ending the
            // transaction and its wait at the server all the same.
            |(_, pooled): (Arc<Transactions>, Pooled)| pooled.session.end(),
        );
        let mut wait = wait;
        let begun = loop {
            let attempt = attempt(&session, key, wait).await;
            let left = match deadline {
                Some(Wait::Until(deadline)) => deadline.saturating_duration_since(Instant::now()),
                _ => Duration::ZERO,
            };
            match attempt {
                // lock_timeout stops at about 24.8 days: a longer wait goes on.
                Err(error) if is_lock_timeout(&error) && left >= Duration::from_millis(1) => {
                    if let Err(error) = session.client.batch_execute("ROLLBACK").await {
                        break Err(error);
                    }
                    wait = Some(Some(left));
                }
                attempt => break attempt,
            }
        };
        let (_, pooled) = abandon.disarm();
        match begun {
            Ok(Some(token)) => {
                let token = inner.target.token(token)?;
                Ok(Self {
                    transactions: inner,
                    connection: Some(pooled),
                    name: name.to_owned(),
                    token,
                })
            }
            Ok(None) => {
                end(&inner, pooled, "ROLLBACK").await?;
                Err(Error::contended(
                    BACKEND,
                    "lock in a transaction",
                    name,
                    "another session holds it",
                )
                .at(&server))
            }
            Err(error) if is_lock_timeout(&error) => {
                end(&inner, pooled, "ROLLBACK").await?;
                Err(timeout())
            }
            Err(error) => {
                pooled.session.end();
                Err(from_postgres(
                    &server,
                    format!("lock `{name}` in a transaction"),
                    error,
                ))
            }
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The grant's fencing token: write it with the protected data, in this
    /// transaction, and refuse any lower one.
    pub fn fencing_token(&self) -> FencingToken {
        self.token
    }

    /// The connection running the transaction: every statement sent
    /// through it is part of the transaction.
    pub fn client(&self) -> &tokio_postgres::Client {
        &self
            .connection
            .as_ref()
            .expect("a transaction has its connection until it ends")
            .session
            .client
    }

    /// Commits the work; the lock is released with the commit. A failed
    /// commit (serialization failure, broken connection) rolled back both.
    pub async fn commit(mut self) -> Result<()> {
        let pooled = self.connection.take().expect("a transaction ends once");
        end(&self.transactions, pooled, "COMMIT").await
    }

    /// Rolls the work back and releases the lock.
    pub async fn rollback(mut self) -> Result<()> {
        let pooled = self.connection.take().expect("a transaction ends once");
        end(&self.transactions, pooled, "ROLLBACK").await
    }
}

/// Begins a transaction and takes `key` in it. lockkit's lock statement
/// runs without the role's `statement_timeout` (which would cut a wait
/// short); the user's statements after it run with the role's settings,
/// but for `synchronous_commit`, which is `on` where it was `off`: the
/// fencing token must survive a crash once the transaction commits.
async fn attempt(
    session: &Session,
    key: i64,
    wait: Option<Option<Duration>>,
) -> std::result::Result<Option<i64>, tokio_postgres::Error> {
    session
        .client
        .batch_execute(
            "BEGIN; SET LOCAL statement_timeout = 0; \
             SELECT pg_catalog.set_config('synchronous_commit', 'on', true) \
             WHERE pg_catalog.current_setting('synchronous_commit') OPERATOR(pg_catalog.=) 'off'",
        )
        .await?;
    let token = session.xact_lock(key, wait).await?;
    if token.is_some() {
        session
            .client
            .batch_execute("SET LOCAL statement_timeout TO DEFAULT")
            .await?;
    }
    Ok(token)
}

/// Ends the transaction on `pooled` with `command`, and gives the
/// connection back if that worked.
async fn end(inner: &Transactions, pooled: Pooled, command: &str) -> Result<()> {
    match pooled.session.client.batch_execute(command).await {
        Ok(()) => {
            inner.pool.put(pooled);
            Ok(())
        }
        Err(error) => {
            // The connection's state is unknown: drop it, and with it
            // whatever the server still holds for it.
            pooled.session.end();
            Err(from_postgres(&inner.target.server, command, error))
        }
    }
}

impl Drop for LockedTransaction {
    fn drop(&mut self) {
        let Some(pooled) = self.connection.take() else {
            return;
        };
        tracing::warn!(
            backend = BACKEND,
            lock = %self.name,
            "locked transaction dropped without commit; rolling it back"
        );
        let inner = Arc::clone(&self.transactions);
        let session = Arc::clone(&pooled.session);
        let spawned = self.transactions.background.spawn(async move {
            let _ = end(&inner, pooled, "ROLLBACK").await;
        });
        if !spawned {
            // Closing the connection rolls the transaction back.
            session.end();
        }
    }
}

impl fmt::Debug for LockedTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedTransaction")
            .field("name", &self.name)
            .field("fencing_token", &self.token)
            .field("open", &self.connection.is_some())
            .finish()
    }
}
