//! Several workers share a queue of jobs; a lock per job makes sure each runs
//! once at a time, and a fenced ledger refuses any write from a stale holder.
//!
//! Runs on the in-process memory backend — no server needed:
//! `cargo run --example quickstart`. Point `LOCKKIT_URL` elsewhere (with the
//! backend's feature compiled in) and nothing below changes.

mod jobs;

use lockkit::LockConfig;

#[tokio::main]
async fn main() -> lockkit::Result<()> {
    // LOCKKIT_URL picks the backend; a bad value is an error, never a silent fallback.
    let config = match std::env::var_os("LOCKKIT_URL") {
        Some(_) => LockConfig::from_env()?,
        None => LockConfig::new("memory://"),
    };
    let locks = lockkit::connect(config).await?;
    if jobs::run(locks).await? {
        Ok(())
    } else {
        std::process::exit(1)
    }
}
