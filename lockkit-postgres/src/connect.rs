//! Connecting: the connection target from a URL and the options, and the
//! shared sessions opened at connect.

use std::str::FromStr;
use std::time::Duration;

use lockkit_core::{Error, ErrorKind, Result};

use crate::error::BACKEND;
use crate::options::PostgresOptions;
use crate::pool::SharedSession;
use crate::session::{Purpose, Session, Target};

/// Opens the `count` shared sessions: the first sets the schema up (the
/// fencing sequence); the others connect together after it, now rather
/// than at their first use, where the connection would add its tens of
/// milliseconds to an acquire.
pub(crate) async fn shared_sessions(target: &Target, count: usize) -> Result<Vec<SharedSession>> {
    let first = Session::connect_setup(target).await?;
    let mut others = tokio::task::JoinSet::new();
    for _ in 1..count {
        let target = target.clone();
        others.spawn(async move { Session::connect(&target, Purpose::Locks).await });
    }
    let mut shared = vec![SharedSession::new(Some(first))];
    while let Some(joined) = others.join_next().await {
        let session = joined.map_err(|error| {
            Error::new(
                ErrorKind::Backend,
                BACKEND,
                format!("connecting a shared session failed: {error}"),
            )
        })??;
        shared.push(SharedSession::new(Some(session)));
    }
    Ok(shared)
}

/// Parses the URL and applies the options: the connection target.
pub(crate) fn target(url: &str, options: &PostgresOptions) -> Result<Target> {
    let conninfo = crate::conninfo::ConnInfo::parse(url)?;
    let mut config = tokio_postgres::Config::from_str(&conninfo.driver).map_err(|error| {
        // The driver's message names the parameter; its Display alone
        // says only "invalid connection string".
        let why = std::error::Error::source(&error)
            .map_or_else(|| error.to_string(), |cause| format!("{error}: {cause}"));
        Error::new(
            ErrorKind::Config,
            BACKEND,
            format!(
                "url: {why}; expected postgres://[user[:password]@]host[:port][/database][?param=value&…] \
                 or libpq's keyword form `host=… port=… user=… dbname=…`"
            ),
        )
        .with_source(error)
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    // Notice a vanished server or network within seconds, not hours: the
    // leases on a dead connection must turn Lost.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(10));
    // The URL's own application_name wins; otherwise sessions show as lockkit's.
    if config.get_application_name().is_none() {
        config.application_name("lockkit");
    }
    let server = server_of(&config);
    let tls = crate::tls::connector(&mut config, &conninfo.tls, &server)?;
    Ok(Target {
        config,
        tls,
        server,
        schema: options.schema.clone(),
        response_timeout: options.response_timeout,
        connections: options.sessions + options.max_waiters + options.max_transactions,
    })
}

/// `host:port` of the first host, for messages.
fn server_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}
