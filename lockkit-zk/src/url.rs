//! `zk://` URLs: the servers of the ensemble, the digest user, the chroot.

use lockkit_core::{ClusterScheme, Result};

use crate::error::BACKEND;

/// How a `zk://` URL is read (see [`ClusterScheme::parse`]).
const SCHEME: ClusterScheme = ClusterScheme {
    scheme: "zk",
    backend: BACKEND,
    default_port: 2181,
    path: Some("the chroot"),
    other_schemes: "TLS and SASL to ZooKeeper are not supported yet",
};

/// What a `zk://` URL says.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Ensemble {
    /// Every server's address, `host:port`, in the URL's order.
    pub(crate) servers: Vec<String>,
    /// The digest user and password, if the URL names a user.
    pub(crate) user: Option<(String, String)>,
    /// The chroot every path is under (`/locks`), if any.
    pub(crate) chroot: Option<String>,
}

impl Ensemble {
    /// The servers as the driver takes them, without the chroot
    /// (`host:port,host:port`): the backend creates the chroot if it is
    /// missing, and then works under it.
    pub(crate) fn connect_string(&self) -> String {
        self.servers.join(",")
    }

    /// The servers as errors name them (`host:port,host:port`).
    pub(crate) fn servers(&self) -> String {
        self.servers.join(",")
    }
}

impl std::fmt::Debug for Ensemble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ensemble")
            .field("servers", &self.servers)
            .field("user", &self.user.as_ref().map(|(user, _)| user))
            .field("chroot", &self.chroot)
            .finish()
    }
}

/// Parses `zk://[user:password@]host[:port][,host[:port]…][/chroot]`.
///
/// The port defaults to 2181. The user, if any, comes once, before the
/// first server, and is sent as ZooKeeper `digest` auth; percent-encode
/// `@`, `:`, `,` and `/` inside it. A chroot path's names must be valid
/// znode names. A `Config` error names what is wrong and never repeats
/// the password.
pub(crate) fn parse(url: &str) -> Result<Ensemble> {
    let parsed = SCHEME.parse(url)?;
    if let Some(chroot) = &parsed.path {
        let first = chroot.split('/').nth(1);
        let bad = chroot
            .split('/')
            .skip(1)
            .find(|name| !crate::keys::is_znode_name(name))
            .or(first.filter(|first| *first == "zookeeper"));
        if let Some(bad) = bad {
            return Err(lockkit_core::Error::new(
                lockkit_core::ErrorKind::Config,
                BACKEND,
                format!(
                    "url `{}`: the chroot `{chroot}` has the node name `{bad}`, which \
                     ZooKeeper refuses (empty, `.`, `..`, a character it does not take, or its own `/zookeeper`)",
                    lockkit_core::redact_url(url)
                ),
            ));
        }
    }
    Ok(Ensemble {
        servers: parsed.members,
        user: parsed.user,
        chroot: parsed.path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockkit_core::ErrorKind;

    #[test]
    fn servers_user_and_chroot() -> Result<()> {
        let ensemble = parse("zk://app:s%40cret@127.0.0.1:2181,127.0.0.1:2182,zk3/locks/app")?;
        assert_eq!(
            ensemble.servers,
            ["127.0.0.1:2181", "127.0.0.1:2182", "zk3:2181"]
        );
        assert_eq!(ensemble.user, Some(("app".to_owned(), "s@cret".to_owned())));
        assert_eq!(ensemble.chroot.as_deref(), Some("/locks/app"));
        assert_eq!(
            ensemble.connect_string(),
            "127.0.0.1:2181,127.0.0.1:2182,zk3:2181"
        );
        assert!(!format!("{ensemble:?}").contains("s@cret"));
        assert_eq!(parse("ZK://h1/")?.chroot, None);
        Ok(())
    }

    #[test]
    fn a_bad_url_is_refused_by_what_is_wrong_without_its_password(
    ) -> std::result::Result<(), String> {
        for (url, says) in [
            ("zk://", "empty"),
            ("zk://h1,,h2", "empty"),
            ("zk://h1:0", "host:port"),
            ("zk://h1,h1:2181", "twice"),
            ("zk://h1?timeout=5s", "parameters"),
            ("zk://h1/a//b", "chroot"),
            ("zk://h1/a/../b", "chroot"),
            ("zk://h1/a/\u{E000}", "chroot"),
            ("zk://h1/zookeeper/quota", "chroot"),
            ("zookeeper://h1", "not zk"),
            ("h1:2181", "expected"),
            ("zk://:hunter2@h1", "user"),
            ("zk://u:hunter2@h1,u:hunter2@h2", "once"),
        ] {
            let error = match parse(url) {
                Ok(ensemble) => return Err(format!("{url}: accepted as {ensemble:?}")),
                Err(error) => error,
            };
            if error.kind() != ErrorKind::Config
                || !error.message().contains(says)
                || error.to_string().contains("hunter2")
            {
                return Err(format!("{url}: {error}"));
            }
        }
        Ok(())
    }
}
