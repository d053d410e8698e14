//! The quickstart's workers against Redlock: the only change is the URL.
//!
//! `cargo run --example redlock --features redlock` uses the five
//! independent Redis servers
//! `redlock://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005`
//! (`scripts/services up` starts them); `LOCKKIT_URL` and the other
//! `LOCKKIT_*` variables (`LOCKKIT_NAMESPACE`, `LOCKKIT_REDLOCK_NODE_TIMEOUT`,
//! …) override it.

mod jobs;

#[tokio::main]
async fn main() -> lockkit::Result<()> {
    jobs::main(
        "redlock://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005",
    )
    .await
}
