//! `redlock://[user:password@]host[:port],[user:password@]host[:port],…`:
//! each member is one independent Redis server, reached as
//! `redis://[user:password@]host[:port]`.

use lockkit_core::{redact_url, Error, ErrorKind, Result};

use crate::BACKEND;

/// The port of a member that names none.
const DEFAULT_PORT: u16 = 6379;

/// One `redis://` URL per member of a `redlock://` URL, in its order.
///
/// Each member may carry its own `user:password@` (percent-encode `@`,
/// `,` and `/` in a password). The URL takes no path, parameters or
/// fragment: a member is a whole server, and the settings are the
/// `[redlock]` section's.
pub fn node_urls(url: &str) -> Result<Vec<String>> {
    let refuse = |why: String| -> Result<Vec<String>> {
        Err(Error::new(
            ErrorKind::Config,
            BACKEND,
            format!("url `{}`: {why}", redact_url(url)),
        ))
    };
    let Some((scheme, members)) = url.split_once("://") else {
        return refuse("expected redlock://host:port,host:port,host:port".to_owned());
    };
    if !scheme.eq_ignore_ascii_case("redlock") {
        return refuse(format!(
            "scheme `{scheme}` is not redlock (for TLS or Unix sockets, pass each node's \
             redis URL to RedlockBackend::connect_nodes)"
        ));
    }
    if members.contains(['?', '#']) {
        return refuse(
            "a redlock URL takes no parameters; set the [redlock] section's fields instead"
                .to_owned(),
        );
    }
    let mut urls = Vec::new();
    for (index, member) in members.split(',').enumerate() {
        let member = member.trim();
        let (credentials, address) = match member.rsplit_once('@') {
            Some((credentials, address)) => (Some(credentials), address),
            None => (None, member),
        };
        if address.is_empty() {
            return refuse(format!("member {} is empty (a stray `,`?)", index + 1));
        }
        if address.contains('/') {
            return refuse(format!(
                "member {} (`{address}`) has a path: a redlock member is a whole server, and \
                 every node uses database 0",
                index + 1
            ));
        }
        let has_port = match address.rsplit_once(':') {
            // `[::1]` alone has colons but no port.
            Some((host, port)) => !host.is_empty() && !port.contains(']'),
            None => false,
        };
        if has_port && address.ends_with(':') {
            return refuse(format!(
                "member {} (`{address}`) has an empty port; write the port, or leave out the \
                 `:` for 6379",
                index + 1
            ));
        }
        let address = if has_port {
            address.to_owned()
        } else {
            format!("{address}:{DEFAULT_PORT}")
        };
        urls.push(match credentials {
            Some(credentials) => format!("redis://{credentials}@{address}"),
            None => format!("redis://{address}"),
        });
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_member_becomes_a_redis_url_with_its_own_credentials() {
        assert_eq!(
            node_urls("redlock://u:p%2Cq@h1:7001,h2,[::1]:7003,[::1]").ok(),
            Some(vec![
                "redis://u:p%2Cq@h1:7001".to_owned(),
                "redis://h2:6379".to_owned(),
                "redis://[::1]:7003".to_owned(),
                "redis://[::1]:6379".to_owned(),
            ])
        );
    }

    #[test]
    fn refusals_say_why_and_never_show_the_password() {
        for (url, why) in [
            ("redis://h1,h2,h3", "not redlock"),
            ("h1,h2,h3", "expected redlock://"),
            ("redlock://h1,,h3", "member 2 is empty"),
            ("redlock://h1:,h2,h3", "empty port"),
            ("redlock://u:secret@h1/2,h2,h3", "has a path"),
            ("redlock://u:secret@h1,h2,h3?x=1", "no parameters"),
        ] {
            let error = node_urls(url).err();
            assert!(
                error
                    .as_ref()
                    .is_some_and(|error| error.kind() == ErrorKind::Config
                        && error.message().contains(why)
                        && !error.message().contains("secret")),
                "{url}: {error:?}"
            );
        }
    }
}
