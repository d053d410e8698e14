//! `etcd://` URLs: the members to use and the etcd user.

use lockkit_core::{ClusterScheme, Result};

use crate::error::BACKEND;

/// How an `etcd://` URL is read (see [`ClusterScheme::parse`]).
const SCHEME: ClusterScheme = ClusterScheme {
    scheme: "etcd",
    backend: BACKEND,
    default_port: 2379,
    path: None,
    other_schemes: "TLS to etcd, `https`, is not supported yet",
};

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
    let url = SCHEME.parse(url)?;
    Ok(Cluster {
        members: url.members,
        user: url.user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockkit_core::ErrorKind;

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
