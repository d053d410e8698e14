//! What the PostgreSQL test binaries share: a backend per namespace, and a
//! plain connection to look at the server from outside lockkit.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use lockkit_core::OwnerToken;
use lockkit_postgres::{PostgresBackend, PostgresOptions};
use tokio_postgres::{Client, NoTls};

/// A backend with the default options in `namespace`.
pub async fn backend(url: &str, namespace: &str) -> PostgresBackend {
    PostgresBackend::connect_with(url, PostgresOptions::new().namespace(namespace))
        .await
        .unwrap()
}

/// Two clients of one fresh namespace: they contend for the same locks.
pub async fn two_backends(url: &str) -> (PostgresBackend, PostgresBackend) {
    let namespace = lockkit_testkit::unique_namespace();
    (
        backend(url, &namespace).await,
        backend(url, &namespace).await,
    )
}

/// A plain connection, to inspect and disturb the server from outside lockkit.
pub async fn raw(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// `pg_locks`' columns for a bigint advisory key: (classid, objid).
pub fn lock_columns(key: i64) -> (u32, u32) {
    let bits = u64::from_ne_bytes(key.to_ne_bytes());
    ((bits >> 32) as u32, bits as u32)
}

/// Waits until someone waits in the server's queue for advisory `key`
/// (a lock request in `pg_locks` not yet granted). No event says so, so
/// this polls the server's own view, briefly.
pub async fn wait_until_queued(admin: &Client, key: i64) {
    let (classid, objid) = lock_columns(key);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                 AND classid = $1 AND objid = $2 AND objsubid = 1 AND NOT granted",
                &[&classid, &objid],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nobody ever queued for key {key}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Waits until no session holds advisory `key`. A terminated session tells
/// its client it is ending a moment before its process exits and frees its
/// locks; nothing announces that moment, so this polls the server's view.
/// Granted advisory locks on `key` at the server, by any session.
pub async fn granted_at_server(admin: &Client, key: i64) -> i64 {
    let (classid, objid) = lock_columns(key);
    admin
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND classid = $1 AND objid = $2 AND objsubid = 1 AND granted",
            &[&classid, &objid],
        )
        .await
        .unwrap()
        .get(0)
}

pub async fn wait_until_free(admin: &Client, key: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let granted = granted_at_server(admin, key).await;
        if granted == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "key {key} was never freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Granting and revoking rights on the one schema update the same catalog
/// rows: tests running at once take turns ("tuple concurrently updated").
pub static ROLES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A login role made for one test, with `settings` as its defaults and the
/// rights lockkit needs on its schema; dropped when this is dropped.
pub struct OwnRole {
    admin_url: String,
    pub name: String,
    /// The server URL, connecting as this role.
    pub url: String,
}

impl OwnRole {
    pub async fn create(url: &str, settings: &[(&str, &str)]) -> Self {
        // The grants below name the fencing sequence: make sure it exists.
        PostgresBackend::connect(url).await.unwrap();
        let hex = OwnerToken::generate().unwrap().to_hex();
        let name = format!("lockkit_test_{}", &hex[..12]);
        let admin = raw(url).await;
        let mut statements = format!(
            "CREATE ROLE {name} LOGIN; \
             GRANT CONNECT ON DATABASE lockkit TO {name}; \
             GRANT USAGE ON SCHEMA lockkit TO {name}; \
             GRANT USAGE, UPDATE ON SEQUENCE lockkit.fence TO {name};"
        );
        for (setting, value) in settings {
            statements.push_str(&format!(" ALTER ROLE {name} SET {setting} = '{value}';"));
        }
        let turn = ROLES.lock().await;
        admin.batch_execute(&statements).await.unwrap();
        drop(turn);
        let role_url = url.replacen("postgres@", &format!("{name}@"), 1);
        assert_ne!(role_url, url, "the test URL must name the user `postgres`");
        Self {
            admin_url: url.to_owned(),
            name,
            url: role_url,
        }
    }
}

impl Drop for OwnRole {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside any await: a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let _turn = ROLES.blocking_lock();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let admin = raw(&url).await;
                let _ = admin
                    .batch_execute(&format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'; \
                         DO $$ DECLARE s text; BEGIN \
                           FOR s IN SELECT nspname FROM pg_namespace WHERE nspname LIKE '{name}\\_%' LOOP \
                             EXECUTE format('DROP SCHEMA %I CASCADE', s); \
                           END LOOP; \
                         END $$; \
                         DROP OWNED BY {name}; DROP ROLE IF EXISTS {name};"
                    ))
                    .await;
            });
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("dropping role {} failed", self.name);
        }
    }
}
