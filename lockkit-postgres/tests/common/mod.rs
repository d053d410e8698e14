//! What the PostgreSQL test binaries share: a backend per namespace, and a
//! plain connection to look at the server from outside lockkit.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use lockkit_postgres::{PostgresBackend, PostgresOptions};
use tokio_postgres::{Client, NoTls};

/// A backend with the default options in `namespace`.
pub async fn backend(url: &str, namespace: &str) -> PostgresBackend {
    PostgresBackend::connect_with(url, PostgresOptions::new().namespace(namespace))
        .await
        .unwrap()
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
