//! Several workers share a queue of jobs; a lock per job makes sure each runs
//! once at a time, and a fenced ledger refuses any write from a stale holder.
//!
//! Runs on the in-process memory backend — no server needed:
//! `cargo run --example quickstart`. Point `LOCKKIT_URL` elsewhere (with the
//! backend's feature compiled in) and nothing changes: the workers, in
//! `examples/jobs/mod.rs`, only ever see a `Locker`.

mod jobs;

#[tokio::main]
async fn main() -> lockkit::Result<()> {
    jobs::main("memory://").await
}
