//! The quickstart's workers against etcd: the only change is the URL.
//!
//! `cargo run --example etcd --features etcd` uses the three-member cluster
//! `etcd://127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379`
//! (`scripts/services up` starts one); `LOCKKIT_URL` and the other
//! `LOCKKIT_*` variables (`LOCKKIT_NAMESPACE`, `LOCKKIT_ETCD_SESSION_TTL`, …)
//! override it.

mod jobs;

#[tokio::main]
async fn main() -> lockkit::Result<()> {
    jobs::main("etcd://127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379").await
}
