//! `lockkit status`: free or held, and what the backend can read of the holder.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use lockkit::{Expiry, Holder, LockConfig, LockStatus};
use serde_json::{json, Value};

use crate::exit::Failure;
use crate::output::Lines;
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
                failure = Some(Failure::from_error(&error));
                break;
            }
        }
    }
    locks.close().await.ok();
    if let Some(failure) = failure {
        return Err(failure);
    }
    let mut lines = Lines::default();
    if args.json {
        let entries: Vec<Value> = read
            .iter()
            .map(|(name, status)| to_json(name, status))
            .collect();
        lines.line(Value::Array(entries));
    } else {
        for (name, status) in &read {
            match status.holder() {
                Some(holder) => {
                    lines.line(format_args!("{name}: held — {}", describe_holder(holder)))
                }
                None => lines.line(format_args!("{name}: free")),
            }
        }
    }
    lines.emit()?;
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
        parts.push(format!(
            "since {}{}",
            humantime::format_rfc3339_seconds(since),
            ago(since)
        ));
    }
    if let Some(queued) = holder.queued_since {
        parts.push(format!(
            "in the queue since {}{}",
            humantime::format_rfc3339_seconds(queued),
            ago(queued)
        ));
    }
    if let Some(who) = &holder.holder {
        parts.push(format!("by {who}"));
    }
    parts.join(", ")
}

/// ` (12s ago)`; nothing for a time ahead of this clock.
fn ago(at: SystemTime) -> String {
    SystemTime::now()
        .duration_since(at)
        .map(|ago| format!(" ({:.0}s ago)", ago.as_secs_f64()))
        .unwrap_or_default()
}

/// `{"name", "state": "free"|"held", "token", "expires_in_ms", "session",
/// "since", "since_unix_ms", "queued_since", "holder"}`, every key always present: what the
/// backend cannot read, and all but the name and state of a free lock, is `null`.
fn to_json(name: &str, status: &LockStatus) -> Value {
    let Some(holder) = status.holder() else {
        return json!({
            "name": name,
            "state": "free",
            "token": null,
            "expires_in_ms": null,
            "session": null,
            "since": null,
            "since_unix_ms": null,
            "queued_since": null,
            "holder": null,
        });
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
        "queued_since": holder.queued_since.map(|at| humantime::format_rfc3339_millis(at).to_string()),
        "holder": holder.holder,
    })
}
