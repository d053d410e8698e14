//! The server's version, which ZooKeeper's client protocol does not carry:
//! asked with the `srvr` four-letter word on the client port, which every
//! server allows unless `4lw.commands.whitelist` leaves it out (it is the
//! one word that list holds by default since 3.5.3, ZOOKEEPER-2693).

use std::time::Duration;

use lockkit_core::{Error, ErrorKind, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::BACKEND;

/// The most of a `srvr` reply read: its version is on the first line.
const REPLY_LIMIT: u64 = 4096;

/// The version the first of `servers` to answer `srvr` reports (`3.8.0`),
/// each asked within `timeout`. `Unsupported` when a server answered but
/// refuses the word; `Unavailable` when none answered.
pub(crate) async fn server_version(servers: &[String], timeout: Duration) -> Result<String> {
    let mut refused = false;
    let mut failures = Vec::new();
    for server in servers {
        match tokio::time::timeout(timeout, srvr(server)).await {
            Ok(Ok(reply)) => match version_of(&reply) {
                Some(version) => return Ok(version.to_owned()),
                None => {
                    refused = true;
                    let first = reply.lines().next().unwrap_or_default();
                    failures.push(format!("{server}: {first}"));
                }
            },
            Ok(Err(error)) => failures.push(format!("{server}: {error}")),
            Err(_) => failures.push(format!("{server}: no answer within {timeout:?}")),
        }
    }
    let (kind, why) = if refused {
        (
            ErrorKind::Unsupported,
            "no server reports its version to `srvr` (4lw.commands.whitelist leaves it out)",
        )
    } else {
        (ErrorKind::Unavailable, "no server answered `srvr`")
    };
    Err(Error::new(kind, BACKEND, format!("{why}: {}", failures.join("; "))).at(servers.join(",")))
}

async fn srvr(server: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(server).await?;
    stream.write_all(b"srvr").await?;
    let mut reply = String::new();
    stream.take(REPLY_LIMIT).read_to_string(&mut reply).await?;
    Ok(reply)
}

/// `3.8.0` from `Zookeeper version: 3.8.0-<commit>, built on …`.
fn version_of(reply: &str) -> Option<&str> {
    let line = reply.lines().next()?.strip_prefix("Zookeeper version: ")?;
    let release = line.split([',', '-']).next()?.trim();
    (!release.is_empty()).then_some(release)
}

#[cfg(test)]
mod tests {
    use super::version_of;

    #[test]
    fn the_release_is_read_from_the_first_line() {
        let reply = "Zookeeper version: 3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC\nMode: follower\n";
        assert_eq!(version_of(reply), Some("3.8.0"));
        assert_eq!(
            version_of(
                "Zookeeper version: 3.9.2-e454e8c7283100c7caec6dcae2bc82aaecb63023, built on x"
            ),
            Some("3.9.2")
        );
        assert_eq!(
            version_of("srvr is not executed because it is not in the whitelist.\n"),
            None
        );
    }
}
