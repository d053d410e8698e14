//! The URLs of a consensus cluster — `etcd://…`, `zk://…` — read once for
//! every backend that takes one: a list of members, an optional user, and
//! for ZooKeeper a root path.

use percent_encoding::percent_decode_str;

use crate::conninfo::redact_url;
use crate::error::{Error, ErrorKind, Result};

/// What a cluster URL says:
/// `scheme://[user:password@]host[:port][,host[:port]…][/path]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    /// Every member's address, `host:port`, in the URL's order: the host
    /// in lowercase, the default port where none is written, each member
    /// once.
    pub members: Vec<String>,
    /// The user and password, percent-decoded, if the URL names a user.
    pub user: Option<(String, String)>,
    /// The path after the members, without its trailing `/`; `None` where
    /// there is none (or only `/`).
    pub path: Option<String>,
}

impl ClusterUrl {
    /// The members as errors name them (`host:port,host:port`).
    pub fn servers(&self) -> String {
        self.members.join(",")
    }
}

impl std::fmt::Debug for ClusterUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterUrl")
            .field("members", &self.members)
            .field("user", &self.user.as_ref().map(|(user, _)| user))
            .field("path", &self.path)
            .finish()
    }
}

/// The rules of one backend's cluster URL.
#[derive(Debug, Clone, Copy)]
pub struct ClusterScheme {
    /// The scheme, as written in the URL (`etcd`, `zk`); also the name of
    /// the backend's configuration section, named in errors.
    pub scheme: &'static str,
    /// The backend's name, as errors carry it.
    pub backend: &'static str,
    /// The port a member is reached on when the URL names none.
    pub default_port: u16,
    /// What a path after the members means, or `None` if the URL has none.
    pub path: Option<&'static str>,
    /// Said when the scheme is another: what the backend does not support.
    pub other_schemes: &'static str,
}

impl ClusterScheme {
    /// Parses `url`; a `Config` error names what is wrong and never repeats
    /// the password.
    ///
    /// The user, if any, comes once, before the first member (the cluster's
    /// users are the cluster's, not a member's); percent-encode `@`, `:`,
    /// `,` and `/` inside it.
    pub fn parse(&self, url: &str) -> Result<ClusterUrl> {
        let refuse = |why: String| -> Result<ClusterUrl> {
            Err(Error::new(
                ErrorKind::Config,
                self.backend,
                format!("url `{}`: {why}", redact_url(url)),
            ))
        };
        let scheme = self.scheme;
        let Some((written, rest)) = url.split_once("://") else {
            return refuse(format!("expected {scheme}://host:port[,host:port…]"));
        };
        if !written.eq_ignore_ascii_case(scheme) {
            return refuse(format!(
                "scheme `{written}` is not {scheme} ({})",
                self.other_schemes
            ));
        }
        if rest.contains(['?', '#']) {
            return refuse(format!(
                "a {scheme} URL takes no parameters; set the [{scheme}] section's fields instead"
            ));
        }
        let (authority, path) = match rest.split_once('/') {
            Some((authority, path)) => (authority, Some(path)),
            None => (rest, None),
        };
        let path = match (path.map(|path| path.trim_end_matches('/')), self.path) {
            (None | Some(""), _) => None,
            (Some(_), None) => {
                return refuse(format!(
                    "a {scheme} URL has no path; the namespace is a setting of its own"
                ))
            }
            (Some(path), Some(_)) => Some(format!("/{path}")),
        };
        let (user, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) => (Some(user), hosts),
            None => (None, authority),
        };
        let user = match user {
            None => None,
            Some(user) if user.contains([',', '@']) => {
                return refuse(format!(
                    "give the {scheme} user once, before the first member \
                     (`{scheme}://user:password@h1,h2`); percent-encode `,` and `@` in a password"
                ));
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
                                self.backend,
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
            let (name, port) = match split_port(host) {
                Some((name, port)) => (name, Some(port)),
                None => (host, None),
            };
            if !is_host(name) {
                return refuse(format!(
                    "member `{host}`: `{name}` is no host name, IPv4 address or \
                     bracketed IPv6 address"
                ));
            }
            let member = match port {
                Some(port) => {
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
                None => format!("{}:{}", name.to_ascii_lowercase(), self.default_port),
            };
            if members.contains(&member) {
                return refuse(format!("member `{member}` is listed twice"));
            }
            members.push(member);
        }
        Ok(ClusterUrl {
            members,
            user,
            path,
        })
    }
}

/// Whether `name` is a host name or IPv4 address (letters, digits, `-`,
/// `.`, `_`) or an IPv6 address in brackets.
fn is_host(name: &str) -> bool {
    match name.strip_prefix('[') {
        Some(bracketed) => bracketed
            .strip_suffix(']')
            .is_some_and(|address| address.parse::<std::net::Ipv6Addr>().is_ok()),
        None => {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        }
    }
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

    const ROOTED: ClusterScheme = ClusterScheme {
        scheme: "zk",
        backend: "zk",
        default_port: 2181,
        path: Some("the root"),
        other_schemes: "TLS is not supported yet",
    };

    #[test]
    fn a_path_is_kept_where_the_scheme_takes_one() -> Result<()> {
        let url = ROOTED.parse("zk://u:p%2Cw@Zk1:2181,zk2/locks/app/")?;
        assert_eq!(url.members, ["zk1:2181", "zk2:2181"]);
        assert_eq!(url.user, Some(("u".to_owned(), "p,w".to_owned())));
        assert_eq!(url.path.as_deref(), Some("/locks/app"));
        assert_eq!(ROOTED.parse("zk://h1/")?.path, None);
        assert_eq!(url.servers(), "zk1:2181,zk2:2181");
        assert!(!format!("{url:?}").contains("p,w"));
        Ok(())
    }

    #[test]
    fn a_member_that_is_no_host_is_refused_by_name() -> Result<()> {
        for bad in [
            "[::1",
            "[::1]x",
            "127.0.0.1 :2181",
            "\u{7f}",
            "h st",
            "[nope]:2181",
            "::1",
        ] {
            let parsed = ROOTED.parse(&format!("zk://{bad}/locks"));
            assert!(parsed.is_err(), "`{bad}` accepted");
            let Err(error) = parsed else { continue };
            assert_eq!(error.kind(), crate::ErrorKind::Config, "{bad}: {error}");
            assert!(error.message().contains("member"), "{bad}: {error}");
        }
        let url = ROOTED.parse("zk://[::1]:2182,zk-1.example_net, 10.0.0.1:2183")?;
        assert_eq!(
            url.members,
            ["[::1]:2182", "zk-1.example_net:2181", "10.0.0.1:2183"]
        );
        Ok(())
    }
}
