//! Helpers the Redis tests share: ACL users of their own, and a look at a
//! lock's queue.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use lockkit_core::OwnerToken;

/// An ACL user made for one test; deleted when dropped, also on panic.
pub struct OwnUser {
    admin: redis::Client,
    pub name: String,
    /// The server URL with this user's credentials.
    pub url: String,
}

impl OwnUser {
    /// A user who may do everything.
    pub fn create(url: &str) -> Self {
        Self::with_rules(url, &["~*", "&*", "+@all"])
    }

    /// A user with these ACL rules (`~*`, `&*`, `+@all`, …) beside its password.
    pub fn with_rules(url: &str, rules: &[&str]) -> Self {
        let admin = redis::Client::open(url).unwrap();
        let hex = OwnerToken::generate().unwrap().to_hex();
        let name = format!("lockkit-test-{}", &hex[..12]);
        let password = &hex[12..];
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&name)
            .arg("on")
            .arg(format!(">{password}"))
            .arg(rules)
            .exec(&mut admin.get_connection().unwrap())
            .unwrap();
        let host = url.strip_prefix("redis://").expect("a redis:// test URL");
        let url = format!("redis://{name}:{password}@{host}");
        Self { admin, name, url }
    }

    /// Makes this user anew with only `rules` (and its password): `ACL
    /// SETUSER <this user> reset on ><password> <rules…>`.
    pub fn reset_to<'a>(&self, rules: impl IntoIterator<Item = &'a str>) {
        let password = self
            .url
            .split_once(':')
            .and_then(|(_, rest)| rest.split_once(':'));
        let password = password
            .and_then(|(_, rest)| rest.split_once('@'))
            .map(|(password, _)| password)
            .expect("redis://user:password@host");
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&self.name)
            .arg("reset")
            .arg("on")
            .arg(format!(">{password}"))
            .arg(rules.into_iter().collect::<Vec<_>>())
            .exec(&mut self.admin.get_connection().unwrap())
            .unwrap();
    }

    /// Drops every connection of this user, as a network failure would.
    pub fn drop_connections(&self) -> usize {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("USER")
            .arg(&self.name)
            .query(&mut self.admin.get_connection().unwrap())
            .unwrap()
    }

    /// How many connections this user has open now.
    pub fn connections(&self) -> usize {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut self.admin.get_connection().unwrap())
            .unwrap();
        let field = format!(" user={} ", self.name);
        list.lines().filter(|line| line.contains(&field)).count()
    }
}

impl Drop for OwnUser {
    fn drop(&mut self) {
        if let Ok(mut connection) = self.admin.get_connection() {
            let _ = redis::cmd("ACL")
                .arg("DELUSER")
                .arg(&self.name)
                .exec(&mut connection);
        }
    }
}

/// Waits until a waiter has a place in the queue of lock `name` (no event
/// announces it, so this looks at the queue key itself).
pub async fn wait_until_queued(url: &str, namespace: &str, name: &str) {
    let keys = lockkit_redis::keys::LockKeys::new(namespace, name);
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let queued: usize = redis::cmd("ZCARD")
            .arg(keys.queue())
            .query_async(&mut connection)
            .await
            .unwrap();
        if queued > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the waiter never queued for {name}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
