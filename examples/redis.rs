//! The quickstart's workers against Redis: the only change is the URL.
//!
//! `cargo run --example redis --features redis` uses `redis://127.0.0.1:6379`
//! (`scripts/services up` starts one); `LOCKKIT_URL` and the other
//! `LOCKKIT_*` variables (`LOCKKIT_NAMESPACE`, `LOCKKIT_REDIS_MIN_REPLICAS`, …)
//! override it.

mod jobs;

#[tokio::main]
async fn main() -> lockkit::Result<()> {
    jobs::main("redis://127.0.0.1:6379").await
}
