//! `lockkit status`: free or held, and what the backend can read of the holder.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use lockkit::{Expiry, Holder, LockConfig, LockStatus};
use serde_json::{json, Value};

use crate::exit::Failure;
use crate::StatusArgs;

/// Prints each name's status, one line each (or one JSON array).
pub(crate) async fn status(config: LockConfig, args: StatusArgs) -> Result<ExitCode, Failure> {
    let locks = crate::connect(config).await?;
    let mut read = Vec::with_capacity(args.names.len());
    let mut failure = None;
    for name in &args.names {
        match locks.status(name).await {
            Ok(status) => read.push((name, status)),
            Err(error) => {
                failure = Some(Failure::from_error(&format!("status `{name}`"), &error));
                break;
            }
        }
    }
    locks.close().await.ok();
    if let Some(failure) = failure {
        return Err(failure);
    }
    if args.json {
        let entries: Vec<Value> = read
            .iter()
            .map(|(name, status)| to_json(name, status))
            .collect();
        println!("{}", Value::Array(entries));
    } else {
        for (name, status) in &read {
            match status.holder() {
                Some(holder) => println!("{name}: held — {}", describe_holder(holder)),
                None => println!("{name}: free"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The holder in one phrase: `token 42, expires in 28.7s, since
/// 2026-12-01T04:10:00Z, by ZooKeeper session 0x…` — what the backend
/// could read, and nothing it could not.
pub(crate) fn describe_holder(holder: &Holder) -> String {
    let mut parts = Vec::new();
    if let Some(token) = holder.token {
        parts.push(format!("token {token}"));
    }
    parts.push(match holder.expiry {
        Expiry::In(left) => format!("expires in {:.1}s", left.as_secs_f64()),
        Expiry::Session => "for as long as its session lives".to_owned(),
        _ => "until it expires".to_owned(),
    });
    if let Some(since) = holder.since {
        let ago = SystemTime::now()
            .duration_since(since)
            .map(|ago| format!(" ({:.0}s ago)", ago.as_secs_f64()))
            .unwrap_or_default();
        parts.push(format!(
            "since {}{ago}",
            humantime::format_rfc3339_seconds(since)
        ));
    }
    if let Some(who) = &holder.holder {
        parts.push(format!("by {who}"));
    }
    parts.join(", ")
}

/// `{"name", "state": "free"|"held", "token", "expires_in_ms", "session",
/// "since", "since_unix_ms", "holder"}`; what the backend cannot read is `null`.
fn to_json(name: &str, status: &LockStatus) -> Value {
    let Some(holder) = status.holder() else {
        return json!({ "name": name, "state": "free" });
    };
    let expires_in_ms = match holder.expiry {
        Expiry::In(left) => Some(u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
        _ => None,
    };
    let since_unix_ms = holder.since.and_then(|since| {
        let millis = since.duration_since(UNIX_EPOCH).ok()?.as_millis();
        u64::try_from(millis).ok()
    });
    json!({
        "name": name,
        "state": "held",
        "token": holder.token.map(|token| token.get()),
        "expires_in_ms": expires_in_ms,
        "session": holder.expiry == Expiry::Session,
        "since": holder.since.map(|since| humantime::format_rfc3339_millis(since).to_string()),
        "since_unix_ms": since_unix_ms,
        "holder": holder.holder,
    })
}
