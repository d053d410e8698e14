//! Charge each customer's invoice exactly once, though several billing
//! workers race for every invoice.
//!
//! The lock and the charge live in one PostgreSQL transaction
//! ([`PostgresBackend::transaction`]): the transaction takes
//! `pg_advisory_xact_lock`, checks the fencing token against the highest one
//! the invoice has seen, records the charge and commits — lock, fence and
//! charge together. A worker that was paused past its turn finds a higher
//! token recorded and writes nothing.
//!
//! `cargo run --example postgres_billing --features postgres` uses
//! `postgres://postgres@127.0.0.1:5432/lockkit` (`scripts/services up`
//! starts one); `LOCKKIT_URL` overrides it. Exits with status 1 if any
//! invoice was charged other than once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockkit::postgres::{tokio_postgres, LockedTransaction, PostgresBackend, PostgresOptions};

const WORKERS: usize = 4;
const INVOICES: usize = 12;

/// The billing tables; `fence` holds the highest token each invoice has seen.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS billing_invoice (
        id text PRIMARY KEY,
        customer text NOT NULL,
        cents bigint NOT NULL,
        fence bigint NOT NULL DEFAULT 0,
        charged_at timestamptz
    );
    CREATE TABLE IF NOT EXISTS billing_charge (
        invoice text NOT NULL REFERENCES billing_invoice (id),
        cents bigint NOT NULL,
        worker int NOT NULL,
        token bigint NOT NULL
    );";

#[tokio::main]
async fn main() -> lockkit::Result<()> {
    let url = std::env::var("LOCKKIT_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/lockkit".to_owned());
    let options = PostgresOptions::new().namespace("billing-example");
    let backend = PostgresBackend::connect_with(&url, options.clone()).await?;
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros());
    let invoices: Vec<String> = (0..INVOICES).map(|n| format!("{run}-{n}")).collect();
    create_invoices(&backend, &invoices).await?;

    // Each worker is its own client, as separate processes would be.
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let (url, options, invoices) = (url.clone(), options.clone(), invoices.clone());
        workers.push(tokio::spawn(async move {
            let backend = PostgresBackend::connect_with(&url, options).await?;
            let mut charged = 0;
            for turn in 0..INVOICES {
                let invoice = &invoices[(worker * 3 + turn) % INVOICES];
                if charge(&backend, invoice, worker).await? {
                    charged += 1;
                }
            }
            lockkit::Result::Ok(charged)
        }));
    }
    let mut total = 0;
    for (worker, handle) in workers.into_iter().enumerate() {
        let charged = handle.await.expect("a billing worker panicked")?;
        println!("worker {worker} charged {charged} invoices");
        total += charged;
    }
    let once = verify(&backend, &invoices).await?;
    println!("{total} charges for {INVOICES} invoices; every invoice charged exactly once: {once}");
    if !once {
        std::process::exit(1);
    }
    Ok(())
}

/// Charges `invoice` unless it already was; returns whether this call charged it.
async fn charge(backend: &PostgresBackend, invoice: &str, worker: usize) -> lockkit::Result<bool> {
    let lock = format!("invoice:{invoice}");
    let transaction = backend.transaction(&lock, Duration::from_secs(5)).await?;
    let token = i64::try_from(transaction.fencing_token().get()).expect("tokens fit in bigint");
    let sql = |error| db_error("charge", error);
    // The fence: only a token above every earlier one may write; the same
    // statement says whether the invoice is still unpaid.
    let row = transaction
        .client()
        .query_opt(
            "UPDATE billing_invoice SET fence = $2 WHERE id = $1 AND fence < $2 \
             RETURNING cents, charged_at IS NULL AS unpaid",
            &[&invoice, &token],
        )
        .await
        .map_err(sql)?;
    let Some(row) = row else {
        println!("worker {worker}: token {token} is stale for {invoice}; writing nothing");
        transaction.rollback().await?;
        return Ok(false);
    };
    let (cents, unpaid): (i64, bool) = (row.get(0), row.get(1));
    if !unpaid {
        // Paid by an earlier holder; keep the raised fence.
        transaction.commit().await?;
        return Ok(false);
    }
    record_charge(&transaction, invoice, cents, worker, token).await?;
    transaction.commit().await?;
    Ok(true)
}

async fn record_charge(
    transaction: &LockedTransaction,
    invoice: &str,
    cents: i64,
    worker: usize,
    token: i64,
) -> lockkit::Result<()> {
    let worker = i32::try_from(worker).expect("few workers");
    let client = transaction.client();
    client
        .execute(
            "INSERT INTO billing_charge (invoice, cents, worker, token) VALUES ($1, $2, $3, $4)",
            &[&invoice, &cents, &worker, &token],
        )
        .await
        .map_err(|error| db_error("record the charge", error))?;
    client
        .execute(
            "UPDATE billing_invoice SET charged_at = now() WHERE id = $1",
            &[&invoice],
        )
        .await
        .map_err(|error| db_error("mark the invoice paid", error))?;
    Ok(())
}

async fn create_invoices(backend: &PostgresBackend, invoices: &[String]) -> lockkit::Result<()> {
    // Any transaction will do for setup; this one also serialises concurrent runs' DDL.
    let setup = backend
        .transaction("billing:setup", Duration::from_secs(10))
        .await?;
    let client = setup.client();
    client
        .batch_execute(SCHEMA)
        .await
        .map_err(|error| db_error("create the billing tables", error))?;
    for (n, invoice) in invoices.iter().enumerate() {
        let customer = format!("customer-{}", n % 5);
        let cents = 1_000 + 250 * i64::try_from(n).expect("few invoices");
        client
            .execute(
                "INSERT INTO billing_invoice (id, customer, cents) VALUES ($1, $2, $3)",
                &[invoice, &customer, &cents],
            )
            .await
            .map_err(|error| db_error("create an invoice", error))?;
    }
    setup.commit().await
}

/// Whether every invoice has exactly one charge, for its own amount.
async fn verify(backend: &PostgresBackend, invoices: &[String]) -> lockkit::Result<bool> {
    let check = backend
        .transaction("billing:verify", Duration::from_secs(10))
        .await?;
    let rows = check
        .client()
        .query(
            "SELECT i.id, count(c.invoice), coalesce(sum(c.cents), 0) = i.cents \
             FROM billing_invoice i LEFT JOIN billing_charge c ON c.invoice = i.id \
             WHERE i.id = ANY($1) GROUP BY i.id, i.cents",
            &[&invoices],
        )
        .await
        .map_err(|error| db_error("verify the charges", error))?;
    check.commit().await?;
    let mut once = rows.len() == invoices.len();
    for row in rows {
        let (invoice, charges, amount_right): (String, i64, bool) =
            (row.get(0), row.get(1), row.get(2));
        if charges != 1 || !amount_right {
            println!("invoice {invoice}: {charges} charges");
            once = false;
        }
    }
    Ok(once)
}

fn db_error(what: &str, error: tokio_postgres::Error) -> lockkit::Error {
    let detail = error
        .as_db_error()
        .map_or_else(|| error.to_string(), |db| db.message().to_owned());
    lockkit::Error::new(
        lockkit::ErrorKind::Backend,
        "postgres",
        format!("{what}: {detail}"),
    )
    .with_source(error)
}
