//! What the etcd test binaries share.

#![allow(dead_code)]

/// The `etcd://` URL of the endpoints `scripts/services` lists
/// (`http://127.0.0.1:2379,http://127.0.0.1:22379,…`).
pub fn url(endpoints: &str) -> String {
    let members: Vec<&str> = endpoints
        .split(',')
        .map(|endpoint| endpoint.trim_start_matches("http://"))
        .collect();
    format!("etcd://{}", members.join(","))
}
