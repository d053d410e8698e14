//! `lockkit-safety`: see the crate's README.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lockkit_safety::plan::{Backend, Scenario};
use lockkit_safety::report::{self, Machine};
use lockkit_safety::run::{self, Outcome, Settings};
use lockkit_safety::servers::{workspace, Servers};

/// Measures, under real faults, how often each lockkit backend admits two
/// holders and how often fencing saves the resource.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One backend under one scenario.
    Run {
        /// The backend.
        #[arg(long, value_enum)]
        backend: Backend,
        /// The fault.
        #[arg(long, value_enum, default_value = "none")]
        scenario: Scenario,
        #[command(flatten)]
        common: Common,
    },
    /// Every backend under every scenario that applies to it, a table at
    /// the end; with `--readme`, the table is written into the crate's README.
    All {
        /// Only these backends (repeatable); every backend without it.
        #[arg(long, value_enum)]
        backend: Vec<Backend>,
        /// Only these scenarios (repeatable), where they apply.
        #[arg(long, value_enum)]
        scenario: Vec<Scenario>,
        /// Write the table into lockkit-safety/README.md.
        #[arg(long)]
        readme: bool,
        #[command(flatten)]
        common: Common,
    },
    /// A client process of a run (started by `run` and `all`).
    #[command(hide = true)]
    Client(lockkit_safety::client::ClientArgs),
}

#[derive(Debug, clap::Args)]
struct Common {
    /// Client processes.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(2..=50))]
    clients: u32,
    /// How long the clients run, the fault included (`20s`, `1m`; at least 2 s).
    #[arg(long, default_value = "20s", value_parser = duration)]
    duration: Duration,
    /// The longest a client holds between its two writes (below the 1 s TTL).
    #[arg(long, default_value = "20ms", value_parser = hold_max)]
    hold_max: Duration,
    /// Where histories, client logs and reports go.
    #[arg(long, default_value = "target/safety")]
    out: PathBuf,
}

/// `--duration`: a run needs time before and after its fault.
fn duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|error| error.to_string())?;
    if duration < Duration::from_secs(2) {
        return Err(format!("{text} is too short: a run takes at least 2s"));
    }
    Ok(duration)
}

/// `--hold-max`: a hold within a lease, so a turn is not a renewal test.
fn hold_max(text: &str) -> Result<Duration, String> {
    let hold = humantime::parse_duration(text).map_err(|error| error.to_string())?;
    if hold >= lockkit_safety::plan::TTL {
        return Err(format!(
            "{text} is not below the clients' TTL ({})",
            humantime::format_duration(lockkit_safety::plan::TTL)
        ));
    }
    Ok(hold)
}

impl Common {
    fn settings(&self) -> Settings {
        Settings {
            clients: self.clients,
            duration: self.duration,
            hold_max: self.hold_max,
            out: self.out.clone(),
            interrupt: run::interrupt_signals(),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Client(args) => lockkit_safety::client::run(args).await,
        Command::Run {
            backend,
            scenario,
            common,
        } => run_one(backend, scenario, &common).await,
        Command::All {
            backend,
            scenario,
            readme,
            common,
        } => run_all(&backend, &scenario, readme, &common).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lockkit-safety: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run_one(backend: Backend, scenario: Scenario, common: &Common) -> Result<(), String> {
    let servers = Servers::find().await?;
    let outcome = run::run(&servers, backend, scenario, &common.settings()).await?;
    let machine = Machine::describe(&workspace());
    print!(
        "{}",
        report::markdown(&machine, std::slice::from_ref(&outcome))
    );
    println!("history: {}", outcome.history.display());
    differing(std::slice::from_ref(&outcome))
}

async fn run_all(
    backends: &[Backend],
    scenarios: &[Scenario],
    readme: bool,
    common: &Common,
) -> Result<(), String> {
    if readme && !(backends.is_empty() && scenarios.is_empty()) {
        return Err(
            "--readme writes the whole table: run `all` without --backend and --scenario".into(),
        );
    }
    let cells: Vec<(Backend, Scenario)> = Backend::ALL
        .into_iter()
        .filter(|backend| backends.is_empty() || backends.contains(backend))
        .flat_map(|backend| backend.scenarios().iter().map(move |&s| (backend, s)))
        .filter(|(_, scenario)| scenarios.is_empty() || scenarios.contains(scenario))
        .collect();
    if cells.is_empty() {
        return Err("no --scenario given applies to any --backend given".into());
    }
    let servers = Servers::find().await?;
    let settings = common.settings();
    run::create_out(&settings.out)?;
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut failures = Vec::new();
    for (backend, scenario) in cells {
        eprintln!("lockkit-safety: {backend} under {scenario} …");
        match run::run(&servers, backend, scenario, &settings).await {
            Ok(outcome) => {
                eprintln!(
                    "lockkit-safety: {backend} under {scenario}: {} grants, {} overlaps, \
                     {} stale writes accepted — promise {}",
                    outcome.report.acquisitions,
                    outcome.report.overlaps,
                    outcome.report.stale_accepted,
                    if outcome.kept { "kept" } else { "DIFFERS" }
                );
                outcomes.push(outcome);
            }
            Err(error) if error == run::INTERRUPTED => return Err(error),
            Err(error) => {
                eprintln!("lockkit-safety: {backend} under {scenario} failed: {error}");
                failures.push(format!("{backend} under {scenario}: {error}"));
            }
        }
    }
    let machine = Machine::describe(&workspace());
    let table = report::markdown(&machine, &outcomes);
    let written = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).map_err(|error| format!("{}: {error}", path.display()))
    };
    written(settings.out.join("report.md"), &table)?;
    written(
        settings.out.join("report.json"),
        &report::json(&machine, &outcomes),
    )?;
    print!("{table}");
    if readme {
        let path = workspace().join("lockkit-safety/README.md");
        let text = std::fs::read_to_string(&path)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        let text = report::replace_generated(&text, &table).ok_or_else(|| {
            format!(
                "{} has no `{}` … `{}` part",
                path.display(),
                report::BEGIN,
                report::END
            )
        })?;
        written(path, &text)?;
    }
    if failures.is_empty() {
        differing(&outcomes)
    } else {
        Err(format!(
            "{} runs failed:\n{}",
            failures.len(),
            failures.join("\n")
        ))
    }
}

/// An error naming every run whose result differs from its backend's
/// promise: each is a bug in the backend or in its docs.
fn differing(outcomes: &[Outcome]) -> Result<(), String> {
    let differing: Vec<String> = outcomes
        .iter()
        .filter(|outcome| !outcome.kept)
        .map(|outcome| {
            let regranted = match (
                outcome.promise.regranted_within_ms,
                outcome.report.regranted_after_ms,
            ) {
                (Some(bound), Some(after)) => {
                    format!(", granted again after {after:.0} ms (promised within {bound:.0})")
                }
                (Some(bound), None) => {
                    format!(", never granted again (promised within {bound:.0} ms)")
                }
                (None, _) => String::new(),
            };
            format!(
                "{} under {}: {} overlaps, {} stale writes accepted{regranted}{} (history: {})",
                outcome.backend,
                outcome.scenario,
                outcome.report.overlaps,
                outcome.report.stale_accepted,
                if outcome.leaked {
                    ", the name leaked"
                } else {
                    ""
                },
                outcome.history.display()
            )
        })
        .collect();
    if differing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} runs differ from what their backend promises:\n{}",
            differing.len(),
            differing.join("\n")
        ))
    }
}
