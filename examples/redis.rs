//! The quickstart's workers against Redis: the only change is the URL.
//!
//! `cargo run --example redis --features redis` uses `redis://127.0.0.1:6379`
//! (`scripts/services up` starts one); `LOCKKIT_URL` and the other
//! `LOCKKIT_*` variables (`LOCKKIT_NAMESPACE`, `LOCKKIT_REDIS_MIN_REPLICAS`, …)
//! override it.

mod jobs;

use lockkit::LockConfig;

#[tokio::main]
async fn main() -> lockkit::Result<()> {
    let config = match std::env::var_os("LOCKKIT_URL") {
        Some(_) => LockConfig::from_env()?,
        None => LockConfig::new("redis://127.0.0.1:6379"),
    };
    let locks = lockkit::connect(config).await?;
    if jobs::run(locks).await? {
        Ok(())
    } else {
        std::process::exit(1)
    }
}
