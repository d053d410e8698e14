//! `lockkit check`: connect, say what the backend promises, time one
//! acquire and release.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use lockkit::{
    redact_url, Acquire, Capabilities, ErrorKind, Fairness, FencingGuarantee, LeaseModel,
    LockConfig, OwnerToken, SafetyClass, WaitMode,
};

use crate::exit::{Failure, EX_UNAVAILABLE};
use crate::output::Lines;

/// The probe lock's TTL: it is released at once, and expires by itself
/// if lockkit dies first.
const PROBE_TTL: Duration = Duration::from_secs(10);

/// Prints the backend's promises, its server's version and one timed
/// acquire and release of a probe lock of its own.
pub(crate) async fn check(config: LockConfig) -> Result<ExitCode, Failure> {
    let url = redact_url(&config.url);
    let namespace = config.namespace.clone();
    let started = Instant::now();
    let locks = crate::connect(config).await?;
    let connected = started.elapsed();
    let capabilities = locks.capabilities().clone();
    let server = match locks.server_version().await {
        Ok(version) => version,
        Err(error) if error.kind() == ErrorKind::Unsupported => "not reported".to_owned(),
        Err(error) => {
            locks.close().await.ok();
            return Err(Failure::from_error(&error));
        }
    };
    let probe = probe_name()?;
    let probed = async {
        let sent = Instant::now();
        let lease = locks
            .try_acquire(&probe, Acquire::ttl(PROBE_TTL))
            .await
            .map_err(|error| Failure::from_error(&error))?
            .ok_or_else(|| {
                Failure::new(
                    EX_UNAVAILABLE,
                    format!("probe: `{probe}` is held by someone else; it should be free"),
                )
            })?;
        let token = lease.fencing_token();
        lease
            .release()
            .await
            .map_err(|error| Failure::from_error(&error))?;
        Ok::<_, Failure>((sent.elapsed(), token))
    }
    .await;
    locks.close().await.ok();
    let (took, token) = probed?;
    let name = locks.backend().name();
    let mut lines = Lines::default();
    lines.line(format_args!("backend    {name}"));
    lines.line(format_args!("url        {url}"));
    lines.line(format_args!("namespace  {namespace}"));
    lines.line(format_args!("server     {server}"));
    lines.line(format_args!("safety     {}", safety(&capabilities)));
    lines.line(format_args!("fencing    {}", fencing(&capabilities)));
    lines.line(format_args!("lease      {}", lease(&capabilities)));
    lines.line(format_args!("waiting    {}", waiting(&capabilities)));
    lines.line(format_args!(
        "status     {}",
        if capabilities.status {
            "readable (lockkit status)"
        } else {
            "not readable on this backend"
        }
    ));
    lines.line(format_args!("connect    {:.1} ms", millis(connected)));
    lines.line(format_args!(
        "probe      acquire + release of `{probe}` in {:.1} ms (token {token})",
        millis(took)
    ));
    lines.emit()?;
    Ok(ExitCode::SUCCESS)
}

/// A probe name of this run's own, so two checks never contend.
fn probe_name() -> Result<String, Failure> {
    let suffix = OwnerToken::generate()
        .map_err(|error| Failure::from_error(&error))?
        .to_hex();
    Ok(format!(
        "lockkit-check:{}",
        suffix.get(..16).unwrap_or(&suffix)
    ))
}

/// A duration in its largest whole unit that keeps it readable: `20ms`,
/// `45s`, `10m`, `365d`.
fn short(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0 => format!("{}ms", duration.as_millis()),
        1..120 => format!("{}s", duration.as_secs_f64()),
        120..7200 => format!("{}m", seconds / 60),
        7200..172_800 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn safety(capabilities: &Capabilities) -> String {
    match capabilities.safety {
        SafetyClass::Efficiency => {
            "efficiency — may, rarely, admit two holders (failover, long pause): \
             for work that is idempotent or de-duplicated"
                .to_owned()
        }
        SafetyClass::Correctness => {
            "correctness — never two holders within the server's guarantees; \
             check the fencing token at the resource"
                .to_owned()
        }
        other => other.to_string(),
    }
}

fn fencing(capabilities: &Capabilities) -> String {
    match capabilities.fencing {
        FencingGuarantee::Linearizable => {
            "linearizable — tokens increase across failover and restart".to_owned()
        }
        FencingGuarantee::BestEffort => {
            "best effort — tokens increase while the server's data survives".to_owned()
        }
        other => format!("{other:?}"),
    }
}

fn lease(capabilities: &Capabilities) -> String {
    match capabilities.lease {
        LeaseModel::Ttl => format!(
            "ttl — expires unless renewed (TTL {} to {}, drift allowance {})",
            short(capabilities.min_ttl),
            short(capabilities.max_ttl),
            short(capabilities.drift),
        ),
        LeaseModel::Session => "session — held while this client's session lives".to_owned(),
        other => format!("{other:?}"),
    }
}

fn waiting(capabilities: &Capabilities) -> String {
    let how = match capabilities.waiting {
        WaitMode::Notify => "notified on release",
        WaitMode::ServerQueue => "queued at the server",
        WaitMode::Poll => "polls",
        _ => "other",
    };
    let order = match capabilities.fairness {
        Fairness::Fifo => "first come, first served",
        Fairness::Unordered => "any waiter may win",
        _ => "other",
    };
    format!("{how}; {order}")
}
