//! The quickstart's workers against PostgreSQL: the only change is the URL.
//!
//! `cargo run --example postgres --features postgres` uses
//! `postgres://postgres@127.0.0.1:5432/lockkit`
//! (`scripts/services up` starts one); `LOCKKIT_URL` and the other
//! `LOCKKIT_*` variables (`LOCKKIT_NAMESPACE`, `LOCKKIT_POSTGRES_SESSIONS`, …)
//! override it.

mod jobs;

#[tokio::main]
async fn main() -> lockkit::Result<()> {
    jobs::main("postgres://postgres@127.0.0.1:5432/lockkit").await
}
