//! The report of runs: a markdown table (backend × scenario) and JSON,
//! with the machine and the commit they ran on.

use std::path::Path;

use serde::Serialize;

use crate::run::Outcome;

/// Where and on what the runs ran.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// The commit (`git describe --always --dirty`).
    pub commit: String,
    /// Kernel, CPUs and memory.
    pub host: String,
    /// When the runs ended (UTC, RFC 3339).
    pub date: String,
}

impl Machine {
    /// This machine, and the commit of the workspace at `workspace`.
    pub fn describe(workspace: &Path) -> Self {
        let run = |program: &str, args: &[&str]| {
            std::process::Command::new(program)
                .args(args)
                .current_dir(workspace)
                .output()
                .ok()
                .filter(|output| output.status.success())
                .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
                .unwrap_or_else(|| "unknown".to_owned())
        };
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|line| line.starts_with("MemTotal:"))
                    .and_then(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .map_or_else(String::new, |kib| {
                format!(", {} GiB", (kib + (1 << 19)) >> 20)
            });
        Self {
            commit: run("git", &["describe", "--always", "--dirty"]),
            host: format!("{}, {cpus} CPUs{memory}", run("uname", &["-sr"])),
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }
}

fn figure(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |value| format!("{value:.decimals$}"))
}

/// The markdown table of `outcomes`.
pub fn markdown(machine: &Machine, outcomes: &[Outcome]) -> String {
    let mut text = format!(
        "Commit `{}` on {}, {}.\n\n\
         | backend | scenario | grants | grants/s before · during · after | overlaps | \
         stale writes tried · unseen · refused · **accepted** | holder's writes refused | \
         victim Lost after | granted again after | acquire errors | free after stop | promise |\n\
         |---|---|---:|---|---:|---|---:|---:|---:|---:|---:|---|\n",
        machine.commit, machine.host, machine.date
    );
    for outcome in outcomes {
        let report = &outcome.report;
        let ms = |value: Option<f64>| match value {
            Some(value) => format!("{value:.0} ms"),
            None => "–".to_owned(),
        };
        text.push_str(&format!(
            "| {} | {} | {} | {} · {} · {} | {} | {} · {} · {} · **{}** | {} | {} | {} | {} | {} | {} |\n",
            outcome.backend,
            outcome.scenario,
            report.acquisitions,
            figure(report.rate_before, 0),
            figure(report.rate_during, 0),
            figure(report.rate_after, 0),
            report.overlaps,
            report.stale_tried,
            report.stale_unseen,
            report.stale_rejected,
            report.stale_accepted,
            report.valid_rejected,
            ms(report.lost_after_ms),
            ms(report.regranted_after_ms),
            report.acquire_errors,
            if outcome.leaked {
                "**leaked**".to_owned()
            } else {
                ms(outcome.free_after_ms)
            },
            if outcome.kept { "kept" } else { "**differs**" },
        ));
    }
    text
}

/// The JSON report of `outcomes`.
pub fn json(machine: &Machine, outcomes: &[Outcome]) -> String {
    #[derive(Serialize)]
    struct Document<'a> {
        machine: &'a Machine,
        runs: &'a [Outcome],
    }
    serde_json::to_string_pretty(&Document {
        machine,
        runs: outcomes,
    })
    .unwrap_or_default()
}

/// The README's generated part lies between these two lines.
pub const BEGIN: &str = "<!-- lockkit-safety all: begin -->";
/// See [`BEGIN`].
pub const END: &str = "<!-- lockkit-safety all: end -->";

/// `readme` with its generated part replaced by `table`; `None` if it has
/// no such part.
pub fn replace_generated(readme: &str, table: &str) -> Option<String> {
    let begin = readme.find(BEGIN)? + BEGIN.len();
    let end = readme[begin..].find(END)? + begin;
    Some(format!("{}\n{table}{}", &readme[..begin], &readme[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_part_is_replaced_and_the_rest_kept() {
        let readme = format!("intro\n{BEGIN}\nold table\n{END}\nafter\n");
        assert_eq!(
            replace_generated(&readme, "new\n").as_deref(),
            Some(format!("intro\n{BEGIN}\nnew\n{END}\nafter\n").as_str())
        );
        assert_eq!(replace_generated("no markers", "new\n"), None);
    }
}
