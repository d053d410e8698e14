//! One connection to PostgreSQL — one server session — and the statements
//! lockkit runs on it.

use std::sync::Arc;
use std::time::Duration;

use lockkit_core::{
    Error, ErrorKind, FencingToken, Result, SessionHealth, SessionSignal, SessionWatch,
};
use tokio::task::AbortHandle;
use tokio_postgres::{Client, Config, Statement};

use crate::error::{from_postgres, BACKEND};

/// The TLS connector: rustls with the `tls` feature, none without it.
#[cfg(feature = "tls")]
pub(crate) type Tls = tokio_postgres_rustls::MakeRustlsConnect;
/// The TLS connector: rustls with the `tls` feature, none without it.
#[cfg(not(feature = "tls"))]
pub(crate) type Tls = tokio_postgres::NoTls;

/// Where sessions connect to, and how.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) config: Config,
    pub(crate) tls: Tls,
    /// `host:port`, for messages.
    pub(crate) server: String,
    /// The schema holding the fencing sequence.
    pub(crate) schema: String,
    /// How long a statement that answers at once may go unanswered.
    pub(crate) response_timeout: Duration,
    /// The most connections the backend opens at once: sessions, waiters
    /// and transactions.
    pub(crate) connections: usize,
}

impl Target {
    /// The error of every call after the backend was closed.
    pub(crate) fn closed(&self) -> Error {
        Error::closed(BACKEND).at(&self.server)
    }

    /// A fencing token from the value of this server's fencing sequence.
    pub(crate) fn token(&self, value: i64) -> Result<FencingToken> {
        u64::try_from(value)
            .ok()
            .and_then(FencingToken::new)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Backend,
                    BACKEND,
                    format!(
                        "{}: the fencing sequence {}.fence returned {value}; it must never be reset or lowered",
                        self.server, self.schema
                    ),
                )
            })
    }
}

/// The longest `lock_timeout` PostgreSQL accepts: 2,147,483,647 ms (about
/// 24.8 days). A longer wait is served as several.
pub(crate) const MAX_LOCK_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Holding and waiting for session locks: only lockkit's statements
    /// run here, so the role's statement and idle timeouts are switched
    /// off — they would cancel a wait, or end a session and its locks.
    Locks,
    /// Running a locked transaction: the user's statements keep the role's
    /// settings; lockkit switches `statement_timeout` off for its own lock
    /// statement only.
    Transactions,
}

/// The statements every session prepares when it connects.
struct Statements {
    /// `$1` key → the fencing token if the lock was free, else NULL.
    try_lock: Statement,
    /// `$1` key, `$2` lock_timeout → blocks until granted, then the fencing token.
    lock: Statement,
    /// `$1` key → whether this session held it (and now does not).
    unlock: Statement,
    /// `$1` classid, `$2` objid → whether this session holds that lock.
    holds: Statement,
    /// `$1` classid, `$2` objid → the holding session's pid, user, client
    /// address and application name, if any session holds that lock in
    /// this database (advisory locks of other databases are other locks).
    holder: Statement,
    /// `$1` key → the fencing token if free, else NULL; inside a transaction.
    try_xact_lock: Statement,
    /// `$1` key, `$2` lock_timeout → blocks until granted, then the
    /// fencing token; inside a transaction.
    xact_lock: Statement,
}

/// A connection to the server: one session, holding any number of locks.
///
/// Its [`SessionSignal`] ends the moment the connection does, which turns
/// every lease granted on it Lost.
pub(crate) struct Session {
    pub(crate) client: Client,
    signal: Arc<SessionSignal>,
    /// The task driving the connection: aborting it closes the socket, and
    /// the server frees every lock the session held.
    driver: AbortHandle,
    statements: Statements,
    response_timeout: Duration,
}

impl Session {
    /// Connects and prepares the statements. The fencing sequence must exist.
    pub(crate) async fn connect(target: &Target, purpose: Purpose) -> Result<Arc<Self>> {
        let (client, signal, driver) = connect_client(target).await?;
        if purpose == Purpose::Locks {
            neutralize(&client, target).await?;
        }
        // Every connection: a host list may lead one to a standby.
        check_writable(&client, target).await?;
        Self::prepared(client, signal, driver, target).await
    }

    /// Connects, creates the fencing sequence if it is missing, and
    /// prepares the statements: a backend's first session.
    pub(crate) async fn connect_setup(target: &Target) -> Result<Arc<Self>> {
        let (client, signal, driver) = connect_client(target).await?;
        neutralize(&client, target).await?;
        check_writable(&client, target).await?;
        check_server(&client, target).await?;
        migrate(&client, target).await?;
        Self::prepared(client, signal, driver, target).await
    }

    async fn prepared(
        client: Client,
        signal: Arc<SessionSignal>,
        driver: AbortHandle,
        target: &Target,
    ) -> Result<Arc<Self>> {
        let statements = prepare(&client, &target.schema).await.map_err(|error| {
            from_postgres(&target.server, "prepare lockkit's statements", error)
        })?;
        Ok(Arc::new(Self {
            client,
            signal,
            driver,
            statements,
            response_timeout: target.response_timeout,
        }))
    }

    /// Whether the connection is still up.
    pub(crate) fn is_alive(&self) -> bool {
        self.signal.health() == SessionHealth::Alive && !self.client.is_closed()
    }

    /// A watch for grants made on this session.
    pub(crate) fn watch(&self) -> SessionWatch {
        self.signal.watch()
    }

    /// Ends the session now: its leases are Lost and its connection
    /// closes, so the server frees every lock it held. Statements in flight
    /// fail. Works from any thread.
    pub(crate) fn end(&self) {
        self.signal.end();
        self.driver.abort();
    }

    /// Runs a statement that answers at once, bounded by the response
    /// timeout: past it the server is taken for gone and the session is
    /// ended — its connection closes, its leases turn Lost, and the
    /// statement fails as on a closed connection.
    async fn answered<T>(
        &self,
        statement: impl std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    ) -> std::result::Result<T, tokio_postgres::Error> {
        tokio::pin!(statement);
        tokio::select! {
            biased;
            outcome = &mut statement => return outcome,
            () = tokio::time::sleep(self.response_timeout) => {}
        }
        tracing::warn!(
            timeout = ?self.response_timeout,
            "no reply from PostgreSQL in time; closing the session, whose locks are lost"
        );
        self.end();
        statement.await
    }

    /// `pg_try_advisory_lock` and, only if granted, the fencing token — one statement.
    pub(crate) async fn try_lock(
        &self,
        key: i64,
    ) -> std::result::Result<Option<i64>, tokio_postgres::Error> {
        let row = self
            .answered(self.client.query_one(&self.statements.try_lock, &[&key]))
            .await?;
        row.try_get(0)
    }

    /// Waits in the server's queue for `key` (at most `timeout`; `None` for
    /// ever), then takes the fencing token.
    pub(crate) async fn lock(
        &self,
        key: i64,
        timeout: Option<Duration>,
    ) -> std::result::Result<i64, tokio_postgres::Error> {
        self.timed_lock(&self.statements.lock, key, timeout).await
    }

    /// Runs `statement`: sets `lock_timeout`, blocks for `key` in the
    /// server's queue, then takes the fencing token — one statement.
    async fn timed_lock(
        &self,
        statement: &Statement,
        key: i64,
        timeout: Option<Duration>,
    ) -> std::result::Result<i64, tokio_postgres::Error> {
        let timeout = match timeout {
            // lock_timeout counts whole milliseconds, and 0 would mean "no
            // limit": round up, never time out before the deadline. Past
            // its maximum the caller waits again.
            Some(timeout) => format!(
                "{}ms",
                timeout
                    .min(MAX_LOCK_TIMEOUT)
                    .as_micros()
                    .div_ceil(1000)
                    .max(1)
            ),
            None => "0".to_owned(),
        };
        let row = self.client.query_one(statement, &[&key, &timeout]).await?;
        row.try_get(0)
    }

    /// `pg_advisory_unlock`: whether this session held the lock.
    pub(crate) async fn unlock(
        &self,
        key: i64,
    ) -> std::result::Result<bool, tokio_postgres::Error> {
        let row = self
            .answered(self.client.query_one(&self.statements.unlock, &[&key]))
            .await?;
        row.try_get(0)
    }

    /// Whether this session holds `key`, by `pg_locks`.
    pub(crate) async fn holds(&self, key: i64) -> std::result::Result<bool, tokio_postgres::Error> {
        let (classid, objid) = advisory_halves(key);
        let row = self
            .answered(
                self.client
                    .query_one(&self.statements.holds, &[&classid, &objid]),
            )
            .await?;
        row.try_get(0)
    }

    /// Who holds `key`, by `pg_locks` and `pg_stat_activity`: the holding
    /// session described as `backend pid 4242 (user app, client 10.0.0.7,
    /// application billing)`, with what this user may see of it; `None`
    /// if the lock is free.
    pub(crate) async fn holder(
        &self,
        key: i64,
    ) -> std::result::Result<Option<String>, tokio_postgres::Error> {
        let (classid, objid) = advisory_halves(key);
        let row = self
            .answered(
                self.client
                    .query_opt(&self.statements.holder, &[&classid, &objid]),
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let pid: Option<i32> = row.try_get(0)?;
        let mut facts = Vec::new();
        for (label, index) in [("user", 1), ("client", 2), ("application", 3)] {
            if let Some(value) = row.try_get::<_, Option<String>>(index)? {
                if !value.is_empty() {
                    facts.push(format!("{label} {value}"));
                }
            }
        }
        let who = match pid {
            Some(pid) => format!("backend pid {pid}"),
            // A prepared transaction holds it (pg_locks shows no pid).
            None => "a prepared transaction".to_owned(),
        };
        Ok(Some(if facts.is_empty() {
            who
        } else {
            format!("{who} ({})", facts.join(", "))
        }))
    }

    /// `SHOW server_version`.
    pub(crate) async fn server_version(
        &self,
    ) -> std::result::Result<String, tokio_postgres::Error> {
        let row = self
            .answered(self.client.query_one("SHOW server_version", &[]))
            .await?;
        row.try_get(0)
    }

    /// In the open transaction: `pg_try_advisory_xact_lock` or, with a
    /// wait, `pg_advisory_xact_lock` under `lock_timeout`;
    /// then the fencing token. `None` if `wait` is `None` and the lock is held.
    pub(crate) async fn xact_lock(
        &self,
        key: i64,
        wait: Option<Option<Duration>>,
    ) -> std::result::Result<Option<i64>, tokio_postgres::Error> {
        match wait {
            None => {
                let row = self
                    .answered(
                        self.client
                            .query_one(&self.statements.try_xact_lock, &[&key]),
                    )
                    .await?;
                row.try_get(0)
            }
            Some(timeout) => self
                .timed_lock(&self.statements.xact_lock, key, timeout)
                .await
                .map(Some),
        }
    }

    /// Asks the server to cancel whatever this session is running (a wait
    /// in the lock queue). Best effort: the query may finish first.
    pub(crate) async fn cancel(&self, tls: Tls) {
        let cancel = self.client.cancel_token();
        if let Err(error) = cancel.cancel_query(tls).await {
            tracing::debug!(%error, "cancel request failed");
        }
    }
}

/// Opens a connection and drives it in a task that ends the session's
/// signal when the connection ends, for whatever reason.
pub(crate) async fn connect_client(
    target: &Target,
) -> Result<(Client, Arc<SessionSignal>, AbortHandle)> {
    let (client, connection) = target
        .config
        .connect(target.tls.clone())
        .await
        .map_err(|error| from_postgres(&target.server, "connect", error))?;
    let signal = Arc::new(SessionSignal::new());
    let ended = Arc::clone(&signal);
    let server = target.server.clone();
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(server, %error, "PostgreSQL connection ended; its locks are lost");
        }
        ended.end();
    });
    Ok((client, signal, driver.abort_handle()))
}

/// A bigint advisory key as `pg_locks` shows it: classid (the high half)
/// and objid (the low half).
fn advisory_halves(key: i64) -> (u32, u32) {
    let bits = u64::from_ne_bytes(key.to_ne_bytes());
    ((bits >> 32) as u32, bits as u32)
}

async fn prepare(
    client: &Client,
    schema: &str,
) -> std::result::Result<Statements, tokio_postgres::Error> {
    // Qualified, as the sessions of locked transactions keep the role's
    // search_path (lock sessions search pg_catalog and pg_temp alone).
    let fence = format!("pg_catalog.nextval('\"{schema}\".fence')");
    let try_lock = format!(
        "SELECT CASE WHEN pg_catalog.pg_try_advisory_lock($1::pg_catalog.int8) THEN {fence} END"
    );
    // The subquery's target list runs in order: lock_timeout is set before
    // the lock is waited for. OFFSET 0 keeps the planner from merging the
    // subquery, so nextval runs only once the lock is granted.
    let lock = format!(
        "SELECT {fence} FROM (SELECT pg_catalog.set_config('lock_timeout', $2::pg_catalog.text, false), \
         pg_catalog.pg_advisory_lock($1::pg_catalog.int8) OFFSET 0) AS granted"
    );
    let try_xact_lock = format!(
        "SELECT CASE WHEN pg_catalog.pg_try_advisory_xact_lock($1::pg_catalog.int8) THEN {fence} END"
    );
    let xact_lock = format!(
        "SELECT {fence} FROM (SELECT pg_catalog.set_config('lock_timeout', $2::pg_catalog.text, true), \
         pg_catalog.pg_advisory_xact_lock($1::pg_catalog.int8) OFFSET 0) AS granted"
    );
    let (try_lock, lock, unlock, holds, holder, try_xact_lock, xact_lock) = tokio::try_join!(
        client.prepare(&try_lock),
        client.prepare(&lock),
        client.prepare("SELECT pg_catalog.pg_advisory_unlock($1::pg_catalog.int8)"),
        client.prepare(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks \
             WHERE locktype OPERATOR(pg_catalog.=) 'advisory' \
             AND pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid() \
             AND classid OPERATOR(pg_catalog.=) $1::pg_catalog.oid \
             AND objid OPERATOR(pg_catalog.=) $2::pg_catalog.oid \
             AND objsubid OPERATOR(pg_catalog.=) 1 AND granted)"
        ),
        client.prepare(
            "SELECT l.pid, a.usename::pg_catalog.text, pg_catalog.host(a.client_addr), \
             a.application_name FROM pg_catalog.pg_locks l \
             LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid \
             WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' \
             AND l.classid OPERATOR(pg_catalog.=) $1::pg_catalog.oid \
             AND l.objid OPERATOR(pg_catalog.=) $2::pg_catalog.oid \
             AND l.objsubid OPERATOR(pg_catalog.=) 1 AND l.granted \
             AND l.database OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database \
             WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) LIMIT 1"
        ),
        client.prepare(&try_xact_lock),
        client.prepare(&xact_lock),
    )?;
    Ok(Statements {
        try_lock,
        lock,
        unlock,
        holds,
        holder,
        try_xact_lock,
        xact_lock,
    })
}

/// Refuses a server or role where lockkit cannot write: every grant takes
/// its fencing token with `nextval`, which a hot standby, or a session
/// whose transactions are read-only by default, refuses.
async fn check_writable(client: &Client, target: &Target) -> Result<()> {
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_is_in_recovery(), \
             pg_catalog.current_setting('transaction_read_only') OPERATOR(pg_catalog.=) 'on'",
            &[],
        )
        .await
        .map_err(|error| from_postgres(&target.server, "check the server is writable", error))?;
    let (standby, read_only): (bool, bool) = (row.get(0), row.get(1));
    let why = if standby {
        "is a hot standby (in recovery, read-only): point url at the primary".to_owned()
    } else if read_only {
        "opens read-only sessions for this user (default_transaction_read_only = on, set for \
         the role, the database or the server): lockkit takes fencing tokens with nextval, so \
         connect as a user whose sessions may write, or run \
         `ALTER ROLE <user> SET default_transaction_read_only = off`"
            .to_owned()
    } else {
        return Ok(());
    };
    Err(lockkit_core::Error::new(
        lockkit_core::ErrorKind::Config,
        crate::error::BACKEND,
        format!("{}: the server {why}", target.server),
    ))
}

/// What a backend's first session checks once: the server's `fsync` (a
/// warning: only the server can change it), and the connection limits of
/// the role and the database against what this client may open.
async fn check_server(client: &Client, target: &Target) -> Result<()> {
    let row = client
        .query_one(
            "SELECT current_setting('fsync') = 'off', \
             (SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user), \
             (SELECT datconnlimit FROM pg_database WHERE datname = current_database()), \
             quote_ident(current_user), current_database()::text",
            &[],
        )
        .await
        .map_err(|error| from_postgres(&target.server, "read the server's settings", error))?;
    if row.get::<_, bool>(0) {
        tracing::warn!(
            server = target.server,
            "fsync is off on this server: after an operating-system crash or power loss it may \
             hand out fencing tokens it handed out before"
        );
    }
    let (role_limit, database_limit) = (
        row.get::<_, Option<i32>>(1).unwrap_or(-1),
        row.get::<_, Option<i32>>(2).unwrap_or(-1),
    );
    let (user, database): (String, String) = (row.get(3), row.get(4));
    let most = target.connections;
    let limited = [
        (
            role_limit,
            format!("user `{user}`"),
            format!("ALTER ROLE {user}"),
        ),
        (
            database_limit,
            format!("database `{database}`"),
            format!("ALTER DATABASE \"{database}\""),
        ),
    ]
    .into_iter()
    .find(|(limit, ..)| *limit >= 0 && (*limit as usize) < most);
    if let Some((limit, who, alter)) = limited {
        return Err(lockkit_core::Error::new(
            lockkit_core::ErrorKind::Config,
            crate::error::BACKEND,
            format!(
                "{}: {who} may open {limit} connections (CONNECTION LIMIT), but this client \
                 opens up to {most} (sessions + max_waiters + max_transactions): a contended \
                 acquire or a locked transaction would fail for want of one. Lower those \
                 options, or run `{alter} CONNECTION LIMIT {most};` (more, if other clients \
                 share it)",
                target.server
            ),
        ));
    }
    Ok(())
}

/// Makes this session's settings the ones lockkit's statements assume,
/// whatever the role, database or server sets by default (`ALTER ROLE …
/// SET …`):
///
/// - `search_path` is `pg_catalog, pg_temp`, so no function, operator or
///   type of another schema can stand in for `pg_try_advisory_lock` or `=`;
/// - `statement_timeout`, `idle_session_timeout`,
///   `idle_in_transaction_session_timeout` and `transaction_timeout` are
///   off: a statement timeout would cancel a wait in the lock queue before
///   its deadline, an idle session timeout would end a session holding
///   locks (settings this server version lacks are skipped);
/// - `synchronous_commit` is `on` where it was `off`: with it off, a crash
///   loses the last advances of the fencing sequence, and tokens already
///   handed out would be handed out again.
async fn neutralize(client: &Client, target: &Target) -> Result<()> {
    client
        .batch_execute(
            "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false); \
             SELECT count(set_config(name, '0', false)) FROM pg_settings WHERE name IN \
             ('statement_timeout', 'idle_session_timeout', \
              'idle_in_transaction_session_timeout', 'transaction_timeout'); \
             SELECT set_config('synchronous_commit', 'on', false) \
             WHERE current_setting('synchronous_commit') = 'off'",
        )
        .await
        .map_err(|error| from_postgres(&target.server, "set lockkit's session settings", error))
}

/// Creates the schema and the fencing sequence if they are missing.
///
/// Serialised by a transaction-scoped advisory lock, so clients starting
/// together do not race on `CREATE … IF NOT EXISTS`. A deployment that
/// creates them in advance needs no CREATE privilege; one that made only the
/// schema needs CREATE on it, not on the database (`CREATE SCHEMA IF NOT
/// EXISTS` would check the database's first, so it runs only when the
/// schema is missing). A missing privilege is a `Config` error naming it
/// and the statement a DBA can run instead.
async fn migrate(client: &Client, target: &Target) -> Result<()> {
    // From the catalogs, which every role may read: looking the schema up
    // by name would fail without USAGE on it. Names come back quoted as SQL
    // needs them (a schema may be a reserved word, a user anything).
    let row = client
        .query_one(
            "SELECT n.oid IS NOT NULL, c.oid IS NOT NULL, \
               COALESCE(has_database_privilege(current_database(), 'CREATE'), false), \
               COALESCE(has_schema_privilege(n.oid, 'USAGE'), false), \
               COALESCE(has_schema_privilege(n.oid, 'CREATE'), false), \
               COALESCE(has_sequence_privilege(c.oid, 'USAGE,UPDATE'), false), \
               quote_ident(current_user), current_database()::text, quote_ident($1) \
             FROM (SELECT 1) AS one \
             LEFT JOIN pg_namespace n ON n.nspname = $1 \
             LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = 'fence' \
               AND c.relkind = 'S'",
            &[&target.schema],
        )
        .await
        .map_err(|error| {
            let fence = format!("{}.fence", target.schema);
            from_postgres(&target.server, format!("look for {fence}"), error)
        })?;
    let has = |column: usize| row.get::<_, bool>(column);
    let (has_schema, has_fence) = (has(0), has(1));
    let (create_schema, use_schema, create_in_schema, take_tokens) =
        (has(2), has(3), has(4), has(5));
    let (user, database, schema): (String, String, String) = (row.get(6), row.get(7), row.get(8));
    let fence = format!("{schema}.fence");
    let (missing, statement) = if !has_schema {
        if create_schema {
            (String::new(), String::new())
        } else {
            (
                format!("CREATE on database `{database}` (to create schema `{schema}`)"),
                format!("CREATE SCHEMA {schema} AUTHORIZATION {user};"),
            )
        }
    } else {
        let mut missing = Vec::new();
        let mut on_schema = Vec::new();
        if !use_schema {
            missing.push(format!("USAGE on schema `{schema}`"));
            on_schema.push("USAGE");
        }
        if !has_fence && !create_in_schema {
            missing.push(format!(
                "CREATE on schema `{schema}` (to create sequence `{fence}`)"
            ));
            on_schema.push("CREATE");
        }
        let mut statement = String::new();
        if !on_schema.is_empty() {
            statement = format!(
                "GRANT {} ON SCHEMA {schema} TO {user};",
                on_schema.join(", ")
            );
        }
        if has_fence && !take_tokens {
            missing.push(format!(
                "USAGE on sequence `{fence}` (to take fencing tokens)"
            ));
            statement = format!("{statement} GRANT USAGE ON SEQUENCE {fence} TO {user};")
                .trim_start()
                .to_owned();
        }
        (missing.join(" and "), statement)
    };
    if !missing.is_empty() {
        return Err(lockkit_core::Error::new(
            lockkit_core::ErrorKind::Config,
            crate::error::BACKEND,
            format!(
                "{}: user `{user}` lacks {missing}. A DBA can run `{statement}`",
                target.server
            ),
        ));
    }
    if has_fence {
        return Ok(());
    }
    let serialise = crate::key::lock_key("lockkit", "migration")?;
    let migration = format!(
        "DO $lockkit$ BEGIN
           IF to_regclass('{fence}') IS NULL THEN
             PERFORM pg_advisory_xact_lock({serialise});
             IF to_regnamespace('{schema}') IS NULL THEN
               CREATE SCHEMA IF NOT EXISTS {schema};
             END IF;
             CREATE SEQUENCE IF NOT EXISTS {fence} AS bigint MINVALUE 1 NO CYCLE;
             COMMENT ON SEQUENCE {fence} IS
               'lockkit fencing tokens: never reset, lower or drop it while locks are in use';
           END IF;
         END $lockkit$"
    );
    client
        .batch_execute(&migration)
        .await
        .map_err(|error| from_postgres(&target.server, format!("create {fence}"), error))
}
