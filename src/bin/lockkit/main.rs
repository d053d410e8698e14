//! `lockkit`: run a program under a lock, see who holds a lock, check a
//! backend — over every backend this build includes, configured as an
//! application is (`--url`, `--config FILE` or `LOCKKIT_URL`).

#![forbid(unsafe_code)]

mod check;
mod exit;
mod output;
mod run;
mod status;
mod terminal;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use lockkit::{LockConfig, Locker};

use crate::exit::{Failure, EX_USAGE};

const ABOUT: &str =
    "Run a program under a distributed lock, see who holds a lock, check a lock backend.";

const LONG_ABOUT: &str = "\
Run a program under a distributed lock, see who holds a lock, check a lock backend.

One command over Redis, Redlock, PostgreSQL, etcd and ZooKeeper: the backend is \
chosen by the URL (or configuration) alone. `lockkit run` hands the program the lock's \
fencing token, so a resource it writes to can refuse a holder that lost the lock.

The backend is named by --url, by --config FILE (a lockkit configuration, TOML, or \
JSON when the file name ends in .json), or by the LOCKKIT_URL environment variable \
(with the other LOCKKIT_* variables of a configuration), in that order.";

const AFTER_LONG_HELP: &str = "\
EXIT STATUS:
  0        done (run: the program's own status is passed on)
  64       bad arguments, URL or configuration (EX_USAGE)
  69       the backend could not be reached or refused the operation (EX_UNAVAILABLE)
  70       run: the lock was lost while the program ran; the program was stopped (EX_SOFTWARE)
  74       standard output could not be written (EX_IOERR)
  75       run: the lock was not acquired within --wait, or at once with --no-wait (EX_TEMPFAIL)
  126/127  run: the program could not be started / was not found
  128+N    run: the program was ended by signal N (SIGINT, SIGTERM, SIGHUP: lockkit ends by it too)

ENVIRONMENT:
  LOCKKIT_URL        the backend, when neither --url nor --config is given
  RUST_LOG           log filter for lockkit's own logs on stderr (e.g. warn, lockkit=debug)

EXAMPLES:
  Keep a cron job single across hosts, giving up if another run holds it:
    */5 * * * *  lockkit run --url redis://locks:6379 --no-wait nightly-report -- /opt/report.sh

  Wait up to 2 minutes for a deploy step, with the fencing token in the program's environment:
    lockkit run --url etcd://e1:2379,e2:2379,e3:2379 --wait 2m deploy:web -- \\
      sh -c 'deploy --fence \"$LOCKKIT_FENCING_TOKEN\"'

  See who holds a lock, and since when:
    lockkit status --url postgres://app@db/app deploy:web nightly-report
    lockkit status --json deploy:web

  Check that a backend works from this host:
    LOCKKIT_URL=zk://z1:2181,z2:2181,z3:2181/locks lockkit check";

#[derive(Debug, Parser)]
#[command(
    name = "lockkit",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// The lock backend: redis://HOST[:PORT], redlock://H1:P1,H2:P2,H3:P3,
    /// postgres://USER@HOST/DB, etcd://H1,H2,H3, zk://H1,H2,H3[/CHROOT], or memory://
    /// (locks private to this one lockkit process: for trying the command out)
    #[arg(long, global = true, value_name = "URL", conflicts_with = "config")]
    url: Option<String>,

    /// A lockkit configuration file (TOML; JSON if it ends in .json): the
    /// URL, namespace, `require` and each backend's section
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Acquire NAME, run PROGRAM while holding it, release it when PROGRAM exits
    #[command(long_about = run::LONG_ABOUT)]
    Run(RunArgs),
    /// Show, for each NAME, whether it is free or held — and the holder's
    /// fencing token, remaining TTL or session, since when and who, where the
    /// backend can read them
    Status(StatusArgs),
    /// Connect, print what the backend promises and its server's version,
    /// and time one acquire and release of a probe lock
    Check,
}

/// `lockkit run`'s arguments.
#[derive(Debug, Args)]
struct RunArgs {
    /// How long the lock lives unless renewed (TTL backends; session
    /// backends hold it as long as lockkit's session lives). E.g. 500ms, 30s,
    /// 2m [default: the configuration's default_ttl, 30s unless set]
    #[arg(long, value_name = "DURATION", value_parser = duration, allow_hyphen_values = true)]
    ttl: Option<Duration>,

    /// Wait at most this long for the lock, then exit 75. Without --wait or
    /// --no-wait, wait as long as it takes
    #[arg(long, value_name = "DURATION", value_parser = duration, conflicts_with = "no_wait", allow_hyphen_values = true)]
    wait: Option<Duration>,

    /// Exit 75 at once if the lock is held
    #[arg(long)]
    no_wait: bool,

    /// Renew the lease while the program runs (every third of the TTL) — the default
    #[arg(long, overrides_with = "no_renew")]
    renew: bool,

    /// Do not renew: on a TTL backend the lock is lost when the TTL ends,
    /// and the program is stopped then
    #[arg(long, overrides_with = "renew")]
    no_renew: bool,

    /// After the lock is lost, how long the program has between SIGTERM and SIGKILL
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "5s", allow_hyphen_values = true)]
    kill_after: Duration,

    /// The lock's name
    #[arg(value_name = "NAME")]
    name: String,

    /// The program and its arguments, after `--`
    #[arg(
        value_name = "PROGRAM",
        last = true,
        required = true,
        num_args = 1..,
        value_parser = clap::value_parser!(OsString)
    )]
    program: Vec<OsString>,
}

/// `lockkit status`'s arguments.
#[derive(Debug, Args)]
struct StatusArgs {
    /// Print one JSON array, an object per name
    #[arg(long)]
    json: bool,

    /// The locks' names
    #[arg(value_name = "NAME", required = true, num_args = 1..)]
    names: Vec<String>,
}

/// A duration such as `500ms`, `30s`, `2m` or `1h 30m`.
fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|_| format!("expected a duration like 30s, got `{text}`"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return Failure::new(
                exit::EX_OSERR,
                format!("cannot start the async runtime: {error}"),
            )
            .report()
        }
    };
    let outcome = runtime.block_on(async move {
        let config = configuration(&cli)?;
        match cli.command {
            Command::Run(args) => run::run(config, args).await,
            Command::Status(args) => status::status(config, args).await,
            Command::Check => check::check(config).await,
        }
    });
    // Background tasks (a session's keep-alive) end with the runtime.
    drop(runtime);
    match outcome {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}

/// Help and version go to stdout with status 0; a refused argument is one
/// line on stderr, naming it, and status 64.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return Failure::new(
            EX_USAGE,
            "a command is needed: run, status or check (see lockkit --help)",
        )
        .report();
    }
    // Clap's first paragraph says what is wrong (a list of missing
    // arguments runs over several lines); usage and tips follow it.
    let rendered = error.render().to_string();
    let paragraph: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let joined = paragraph.join(" ");
    let line = joined.strip_prefix("error: ").unwrap_or(&joined);
    let hint = if error.kind() == ErrorKind::UnknownArgument {
        "; the program and its arguments go after `--`: lockkit run NAME -- PROGRAM [ARGS…]"
    } else {
        ""
    };
    Failure::new(EX_USAGE, format!("{line}{hint} (see lockkit --help)")).report()
}

/// The configuration: `--config FILE`, else `--url`, else the environment.
fn configuration(cli: &Cli) -> Result<LockConfig, Failure> {
    if let Some(path) = &cli.config {
        let text = std::fs::read_to_string(path).map_err(|error| {
            Failure::new(
                EX_USAGE,
                format!("--config: cannot read {}: {error}", path.display()),
            )
        })?;
        let parsed = if path.extension().is_some_and(|ext| ext == "json") {
            LockConfig::from_json(&text)
        } else {
            LockConfig::from_toml(&text)
        };
        return parsed.map_err(|error| {
            Failure::new(
                EX_USAGE,
                format!("--config {}: {}", path.display(), error.message()),
            )
        });
    }
    if let Some(url) = &cli.url {
        return Ok(LockConfig::new(url.as_str()));
    }
    if std::env::var_os("LOCKKIT_URL").is_none() {
        return Err(Failure::new(
            EX_USAGE,
            "no backend: pass --url URL or --config FILE, or set LOCKKIT_URL (see lockkit --help)",
        ));
    }
    LockConfig::from_env().map_err(|error| Failure::new(EX_USAGE, error.message().to_owned()))
}

/// Connects as the configuration says; a failure names the backend and
/// never the password.
async fn connect(config: LockConfig) -> Result<Locker, Failure> {
    lockkit::connect(config)
        .await
        .map_err(|error| Failure::from_error(&error))
}
