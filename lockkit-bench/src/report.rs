//! The results: a markdown table on stdout and JSON rows under `target/bench/`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::workloads::{Measured, Workload};

/// One line of the table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    backend: String,
    /// Whether this is the raw floor (table only; the JSON holds lockkit rows).
    raw: bool,
    /// The peer library this row measures (table only).
    peer: Option<&'static str>,
    workload: &'static str,
    pairs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    ratio_to_raw: Option<f64>,
    /// lockkit's time per operation ÷ the fastest peer's, and which peer.
    ratio_to_peer: Option<(f64, &'static str)>,
    fairness: Option<f64>,
}

impl Row {
    /// lockkit's row; `floor` is the raw run of the same workload, `peers`
    /// the other libraries' runs.
    pub(crate) fn new(
        backend: &str,
        workload: Workload,
        measured: &Measured,
        floor: Option<&Measured>,
        peers: &[(&'static str, &Measured)],
    ) -> Self {
        let mut row = Self::of(backend, workload, measured);
        // lockkit's time per operation ÷ the raw floor's, and the best peer's.
        row.ratio_to_raw = floor.map(|floor| floor.rate / measured.rate);
        row.ratio_to_peer = peers
            .iter()
            .max_by(|(_, a), (_, b)| a.rate.total_cmp(&b.rate))
            .map(|(name, best)| (best.rate / measured.rate, *name));
        row
    }

    /// A peer library's row.
    pub(crate) fn peer(
        backend: &str,
        name: &'static str,
        workload: Workload,
        measured: &Measured,
    ) -> Self {
        Self {
            peer: Some(name),
            ..Self::of(backend, workload, measured)
        }
    }

    /// The raw floor's row.
    pub(crate) fn raw(backend: &str, workload: Workload, measured: &Measured) -> Self {
        Self {
            raw: true,
            ..Self::of(backend, workload, measured)
        }
    }

    fn of(backend: &str, workload: Workload, measured: &Measured) -> Self {
        let ms = |quantile: f64| measured.latency.value_at_quantile(quantile) as f64 / 1000.0;
        Self {
            backend: backend.to_owned(),
            raw: false,
            peer: None,
            workload: workload.name(),
            pairs_per_s: measured.rate,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            max_ms: measured.latency.max() as f64 / 1000.0,
            ratio_to_raw: None,
            ratio_to_peer: None,
            fairness: measured.fairness,
        }
    }
}

pub(crate) fn markdown(rows: &[Row]) -> String {
    let mut table = String::from(
        "| backend | workload | pairs/s (W2: acq/s) | p50 ms | p99 ms | max ms | ratio to raw | ratio to best peer | fairness |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let optional = |value: Option<f64>| value.map_or("–".to_owned(), |v| format!("{v:.2}"));
        let subject = match (row.raw, row.peer) {
            (true, _) => " (raw)".to_owned(),
            (_, Some(peer)) => format!(" ({peer})"),
            _ => String::new(),
        };
        let peer = row.ratio_to_peer.map_or("–".to_owned(), |(ratio, name)| {
            format!("{ratio:.2} ({name})")
        });
        table.push_str(&format!(
            "| {}{} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {} | {} | {} |\n",
            row.backend,
            subject,
            row.workload,
            row.pairs_per_s,
            row.p50_ms,
            row.p99_ms,
            row.max_ms,
            optional(row.ratio_to_raw),
            peer,
            optional(row.fairness),
        ));
    }
    table
}

/// Writes lockkit's rows to `target/bench/<unix seconds>.json` and
/// `target/bench/latest.json`; returns the former.
pub(crate) fn write_json(rows: &[Row]) -> std::io::Result<PathBuf> {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let number = |value: f64| {
        if value.is_finite() {
            json!(value)
        } else {
            Value::Null
        }
    };
    let json_rows: Vec<Value> = rows
        .iter()
        .filter(|row| !row.raw && row.peer.is_none())
        .map(|row| {
            json!({
                "backend": row.backend,
                "workload": row.workload,
                "pairs_per_s": number(row.pairs_per_s),
                "p50_ms": number(row.p50_ms),
                "p99_ms": number(row.p99_ms),
                "max_ms": number(row.max_ms),
                "ratio_to_raw": row.ratio_to_raw.map_or(Value::Null, number),
                "ratio_to_best_peer": row.ratio_to_peer.map_or(Value::Null, |(ratio, _)| number(ratio)),
                "best_peer": row.ratio_to_peer.map_or(Value::Null, |(_, name)| json!(name)),
                "fairness": row.fairness.map_or(Value::Null, number),
                "commit": commit,
                "cores": cores,
            })
        })
        .collect();
    // The workspace's target folder: this crate's parent.
    let crate_folder = Path::new(env!("CARGO_MANIFEST_DIR"));
    let folder = crate_folder
        .parent()
        .unwrap_or(crate_folder)
        .join("target/bench");
    std::fs::create_dir_all(&folder)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let text = serde_json::to_string_pretty(&json_rows).expect("rows serialize");
    let path = folder.join(format!("{stamp}.json"));
    std::fs::write(&path, &text)?;
    std::fs::write(folder.join("latest.json"), &text)?;
    Ok(path)
}
