//! The real servers of `scripts/services`: where they are, and the faults
//! done to them through it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::plan::Backend;

/// The `LOCKKIT_TEST_*` variables of `scripts/services env`.
#[derive(Debug, Clone)]
pub struct Servers {
    vars: HashMap<String, String>,
}

impl Servers {
    /// The servers named by this process's `LOCKKIT_TEST_*` variables, or,
    /// where none are set, by `scripts/services env` of this workspace.
    pub async fn find() -> Result<Self, String> {
        let mut vars: HashMap<String, String> = std::env::vars()
            .filter(|(name, _)| name.starts_with("LOCKKIT_"))
            .collect();
        if !vars.contains_key("LOCKKIT_TEST_SERVICES") {
            let script = workspace().join("scripts/services");
            let output = Command::new(&script)
                .arg("env")
                .output()
                .await
                .map_err(|error| format!("{}: {error}", script.display()))?;
            if !output.status.success() {
                return Err(format!(
                    "`{} env` failed: {}",
                    script.display(),
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                if let Some((name, value)) = line.trim_start_matches("export ").split_once('=') {
                    vars.entry(name.to_owned())
                        .or_insert_with(|| value.to_owned());
                }
            }
        }
        Ok(Self { vars })
    }

    fn var(&self, name: &str) -> Result<&str, String> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| format!("{name} is not set: run `scripts/services up` first"))
    }

    /// The lockkit URL of `backend`'s servers.
    pub fn url(&self, backend: Backend) -> Result<String, String> {
        let hosts = |list: &str, scheme: &str| {
            list.split(',')
                .map(|url| url.trim_start_matches(scheme))
                .collect::<Vec<_>>()
                .join(",")
        };
        Ok(match backend {
            Backend::Memory => "memory://".to_owned(),
            Backend::Redis => self.var("LOCKKIT_TEST_REDIS_URL")?.to_owned(),
            Backend::Redlock => format!(
                "redlock://{}",
                hosts(self.var("LOCKKIT_TEST_REDLOCK_URLS")?, "redis://")
            ),
            Backend::Postgres => self.var("LOCKKIT_TEST_POSTGRES_URL")?.to_owned(),
            Backend::Etcd => format!(
                "etcd://{}",
                hosts(self.var("LOCKKIT_TEST_ETCD_ENDPOINTS")?, "http://")
            ),
            Backend::Zk => format!(
                "zk://{}/lockkit-safety",
                self.var("LOCKKIT_TEST_ZK_CONNECT")?
            ),
        })
    }

    /// The failover pair's primary and replica, as `127.0.0.1:port`.
    pub fn failover_pair(&self) -> Result<(String, String), String> {
        let pair = self.var("LOCKKIT_TEST_REDIS_FAILOVER")?;
        let mut urls = pair
            .split(',')
            .map(|url| url.trim_start_matches("redis://"));
        match (urls.next(), urls.next()) {
            (Some(primary), Some(replica)) => Ok((primary.to_owned(), replica.to_owned())),
            _ => Err(format!(
                "LOCKKIT_TEST_REDIS_FAILOVER is {pair:?}, not a primary's and a replica's URL"
            )),
        }
    }

    /// The PostgreSQL URL (for the nemesis' own session).
    pub fn postgres_url(&self) -> Result<&str, String> {
        self.var("LOCKKIT_TEST_POSTGRES_URL")
    }

    /// Runs `scripts/services VERB [NAME]`, failing with its output.
    pub async fn services(&self, verb: &str, name: Option<&str>) -> Result<String, String> {
        let script = self.var("LOCKKIT_TEST_SERVICES")?;
        let mut command = Command::new(script);
        command.arg(verb).args(name);
        if let Ok(dir) = self.var("LOCKKIT_SERVICES_DIR") {
            command.env("LOCKKIT_SERVICES_DIR", dir);
        }
        let output = command
            .output()
            .await
            .map_err(|error| format!("{script}: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "`scripts/services {verb} {}` failed: {}",
                name.unwrap_or(""),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The member of a cluster (`etcd-`, `zk-`) that `scripts/services
    /// status` shows as its leader.
    pub async fn leader(&self, prefix: &str) -> Result<String, String> {
        let status = self.services("status", None).await?;
        status
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|fields| {
                fields.first().is_some_and(|name| name.starts_with(prefix))
                    && fields.last() == Some(&"leader")
            })
            .and_then(|fields| fields.first().map(|name| (*name).to_owned()))
            .ok_or_else(|| format!("no {prefix}* member is leader:\n{status}"))
    }
}

/// The workspace this binary was built in (for `scripts/services`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}
