//! The quickstart's workers against ZooKeeper: the only change is the URL.
//!
//! `cargo run --example zk --features zk` uses the three-server ensemble
//! `zk://127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183/lockkit-example`
//! (`scripts/services up` starts one); `LOCKKIT_URL` and the other
//! `LOCKKIT_*` variables (`LOCKKIT_NAMESPACE`, `LOCKKIT_ZK_SESSION_TIMEOUT`,
//! …) override it.

mod jobs;

#[tokio::main]
async fn main() -> lockkit::Result<()> {
    jobs::main("zk://127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183/lockkit-example").await
}
