//! `etcd://` URLs: the members to use and the etcd user.

use lockkit_core::{redact_url, Error, ErrorKind, Result};
use percent_encoding::percent_decode_str;

use crate::error::BACKEND;

/// The port a member is reached on when the URL names none.
const DEFAULT_PORT: u16 = 2379;

/// What an `etcd://` URL says.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Cluster {
    /// Every member's address, `host:port`, in the URL's order.
    pub(crate) members: Vec<String>,
    /// The etcd user and password, if the cluster has auth enabled.
    pub(crate) user: Option<(String, String)>,
}

impl Cluster {
    /// The members as the driver takes them (`http://host:port`).
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|member| format!("http://{member}"))
            .collect()
    }

    /// The members as errors name them (`host:port,host:port`).
    pub(crate) fn servers(&self) -> String {
        self.members.join(",")
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("members", &self.members)
            .field("user", &self.user.as_ref().map(|(user, _)| user))
            .finish()
    }
}

/// Parses `etcd://[user:password@]host[:port][,host[:port]…]`.
///
/// The user, if any, comes once, before the first member (etcd's users are
/// the cluster's); percent-encode `@`, `:`, `,` and `/` inside it. A `Config`
/// error names what is wrong and never repeats the password.
pub(crate) fn parse(url: &str) -> Result<Cluster> {
    let refuse = |why: String| {
        Err(Error::new(
            ErrorKind::Config,
            BACKEND,
            format!("url `{}`: {why}", redact_url(url)),
        ))
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return refuse("expected etcd://host:port[,host:port…]".to_owned());
    };
    if !scheme.eq_ignore_ascii_case("etcd") {
        return refuse(format!(
            "scheme `{scheme}` is not etcd (TLS to etcd, `https`, is not supported yet)"
        ));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['?', '#']) {
        return refuse(
            "an etcd URL takes no parameters; set the [etcd] section's fields instead".to_owned(),
        );
    }
    if rest.contains('/') {
        return refuse("an etcd URL has no path; the namespace is a setting of its own".to_owned());
    }
    let (user, hosts) = match rest.rsplit_once('@') {
        Some((user, hosts)) => (Some(user), hosts),
        None => (None, rest),
    };
    let user = match user {
        None => None,
        Some(user) if user.contains([',', '@']) => {
            return refuse(
                "give the etcd user once, before the first member (`etcd://user:password@h1,h2`); \
                 percent-encode `,` and `@` in a password"
                    .to_owned(),
            );
        }
        Some(user) => {
            let (name, password) = user.split_once(':').unwrap_or((user, ""));
            let decode = |text: &str, field: &str| {
                percent_decode_str(text)
                    .decode_utf8()
                    .map(|text| text.into_owned())
                    .map_err(|_| {
                        Error::new(
                            ErrorKind::Config,
                            BACKEND,
                            format!(
                                "url `{}`: the {field} is not UTF-8 once percent-decoded",
                                redact_url(url)
                            ),
                        )
                    })
            };
            let name = decode(name, "user")?;
            if name.is_empty() {
                return refuse("the user before `@` is empty".to_owned());
            }
            Some((name, decode(password, "password")?))
        }
    };
    let mut members = Vec::new();
    for host in hosts.split(',') {
        let host = host.trim();
        if host.is_empty() {
            return refuse("a member's address is empty (a stray `,`?)".to_owned());
        }
        let member = match split_port(host) {
            Some((name, port)) => {
                let Ok(port) = port.parse::<u16>() else {
                    return refuse(format!(
                        "member `{host}`: the port is not a number from 1 to 65535"
                    ));
                };
                if port == 0 || name.is_empty() {
                    return refuse(format!("member `{host}`: expected host:port"));
                }
                // One spelling per member, so a member listed twice is found.
                format!("{}:{port}", name.to_ascii_lowercase())
            }
            None => format!("{}:{DEFAULT_PORT}", host.to_ascii_lowercase()),
        };
        if members.contains(&member) {
            return refuse(format!("member `{member}` is listed twice"));
        }
        members.push(member);
    }
    Ok(Cluster { members, user })
}

/// `host:port` split at its port, if it has one (`[::1]:2379` too).
fn split_port(host: &str) -> Option<(&str, &str)> {
    if let Some(bracketed) = host.strip_prefix('[') {
        let (_, after) = bracketed.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((&host[..host.len() - port.len() - 1], port));
    }
    host.rsplit_once(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_user() -> Result<()> {
        let cluster = parse("etcd://app:s%40cret@127.0.0.1:2379,127.0.0.1:22379,db3")?;
        assert_eq!(
            cluster.members,
            ["127.0.0.1:2379", "127.0.0.1:22379", "db3:2379"]
        );
        assert_eq!(cluster.user, Some(("app".to_owned(), "s@cret".to_owned())));
        assert_eq!(cluster.endpoints()[0], "http://127.0.0.1:2379");
        assert!(!format!("{cluster:?}").contains("s@cret"));
        let cluster = parse("ETCD://[::1]:2379/")?;
        assert_eq!(cluster.members, ["[::1]:2379"]);
        assert_eq!(cluster.user, None);
        Ok(())
    }

    #[test]
    fn a_bad_url_is_refused_by_what_is_wrong_without_its_password(
    ) -> std::result::Result<(), String> {
        for (url, says) in [
            ("etcd://", "empty"),
            ("etcd://h1,,h2", "empty"),
            ("etcd://h1:0", "host:port"),
            ("etcd://h1:99999", "port"),
            ("etcd://h1,h1:2379", "twice"),
            ("etcd://127.0.0.1:2379,127.0.0.1:02379", "twice"),
            ("etcd://H1:2379,h1", "twice"),
            ("etcd://h1?timeout=5s", "parameters"),
            ("etcd://h1/ns", "path"),
            ("https://h1", "TLS"),
            ("h1:2379", "expected"),
            ("etcd://:hunter2@h1", "user"),
            ("etcd://u:hunter2@h1,u:hunter2@h2", "once"),
        ] {
            let error = match parse(url) {
                Ok(cluster) => return Err(format!("{url}: accepted as {cluster:?}")),
                Err(error) => error,
            };
            assert_eq!(error.kind(), ErrorKind::Config, "{url}");
            assert!(error.message().contains(says), "{url}: {error}");
            assert!(!error.to_string().contains("hunter2"), "{url}: {error}");
        }
        Ok(())
    }
}
