//! One run: a backend, a scenario, client processes, the fenced resource,
//! the nemesis, and the checked history.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lockkit::{Acquire, LockConfig};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::now_ns;
use crate::history::{self, Event, Report};
use crate::nemesis::Nemesis;
use crate::plan::{Backend, Promise, Scenario, SESSION};
use crate::proxy::Proxy;
use crate::resource::Resource;
use crate::servers::Servers;

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Client processes (the memory backend's clients are tasks of one).
    pub clients: u32,
    /// How long the clients run, the fault included; a fault that takes
    /// longer than its share extends the run.
    pub duration: Duration,
    /// The longest a client holds between its two writes.
    pub hold_max: Duration,
    /// Where histories, configurations and client logs go.
    pub out: PathBuf,
    /// Turns true on SIGINT or SIGTERM: the run heals its fault, stops its
    /// clients and ends with [`INTERRUPTED`].
    pub interrupt: watch::Receiver<bool>,
}

/// The error of a run ended by SIGINT or SIGTERM.
pub const INTERRUPTED: &str = "interrupted (SIGINT or SIGTERM); the fault was healed";

/// A receiver that turns true on the first SIGINT or SIGTERM.
pub fn interrupt_signals() -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        eprintln!("lockkit-safety: interrupted: healing the fault and stopping the clients");
        let _ = sender.send(true);
    });
    receiver
}

/// What a run showed.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The backend.
    pub backend: Backend,
    /// The scenario.
    pub scenario: Scenario,
    /// Clients.
    pub clients: u32,
    /// From the first grant to the clients' stop, in s.
    pub seconds: f64,
    /// The checker's figures.
    pub report: Report,
    /// Whether the name was still held after every client stopped, for
    /// longer than a lease or session could outlive its holder.
    pub leaked: bool,
    /// How soon, after the clients stopped, a fresh client acquired the name, in ms.
    pub free_after_ms: Option<f64>,
    /// What the backend's docs promise here.
    pub promise: Promise,
    /// Whether the run kept that promise.
    pub kept: bool,
    /// The history, JSON lines.
    pub history: PathBuf,
}

/// A client process of the run.
#[derive(Debug)]
pub(crate) struct ClientProcess {
    /// Its first (for the memory backend, its only) client number.
    pub(crate) first_id: u32,
    pub(crate) pid: i32,
    pub(crate) child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    log: PathBuf,
    reader: JoinHandle<()>,
}

impl ClientProcess {
    /// Sends one command line; a client that is gone ignores it.
    pub(crate) async fn command(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(format!("{line}\n").as_bytes()).await;
            let _ = stdin.flush().await;
        }
    }
}

/// The shared name every client locks.
const NAME: &str = "shared";

/// The wait for the first grant, the clients' connects included.
const FIRST_GRANT: Duration = Duration::from_secs(60);

/// The wait for a client to finish its turn and exit after `stop`.
const STOP: Duration = Duration::from_secs(20);

/// The run's time before its fault starts, as a share of its duration.
const BEFORE_FAULT: f64 = 0.25;

/// The least time the clients run after a fault healed.
const AFTER_FAULT: Duration = Duration::from_secs(4);

/// Runs `scenario` against `backend` and checks the history.
pub async fn run(
    servers: &Servers,
    backend: Backend,
    scenario: Scenario,
    settings: &Settings,
) -> Result<Outcome, String> {
    if !backend.scenarios().contains(&scenario) {
        let names: Vec<_> = backend.scenarios().iter().map(|s| s.name()).collect();
        return Err(format!(
            "--scenario {scenario} does not apply to --backend {backend}; its scenarios: {}",
            names.join(", ")
        ));
    }
    create_out(&settings.out)?;
    let cell = format!("{backend}-{scenario}");
    let history = Arc::new(Mutex::new(Vec::new()));
    let resource = Resource::start(Arc::clone(&history))
        .await
        .map_err(|error| format!("the fenced resource: {error}"))?;
    let failover = matches!(scenario, Scenario::Failover | Scenario::FailoverMinReplicas);
    let proxy = if failover {
        let (primary, _) = servers.failover_pair()?;
        let primary = primary
            .parse()
            .map_err(|error| format!("the failover primary {primary}: {error}"))?;
        Some(
            Proxy::start(primary)
                .await
                .map_err(|error| format!("the failover proxy: {error}"))?,
        )
    } else {
        None
    };
    let url = match &proxy {
        Some(proxy) => format!("redis://{}", proxy.address()),
        // The run's PostgreSQL sessions carry its name: the nemesis ends
        // those, and no one else's.
        None if backend == Backend::Postgres => {
            let url = servers.url(backend)?;
            let separator = if url.contains('?') { '&' } else { '?' };
            format!("{url}{separator}application_name={}", application_name())
        }
        None => servers.url(backend)?,
    };
    let config = configuration(&url, backend, scenario);
    let config_path = settings.out.join(format!("{cell}.toml"));
    write(&config_path, &config)?;
    let faketime =
        (scenario == Scenario::ClockJump).then(|| settings.out.join(format!("{cell}.faketime")));
    if let Some(path) = &faketime {
        write(path, "+0\n")?;
    }

    let mut clients = Vec::new();
    let processes = if backend == Backend::Memory {
        1
    } else {
        settings.clients
    };
    let tasks = if backend == Backend::Memory {
        settings.clients
    } else {
        1
    };
    for index in 0..processes {
        let first_id = index * tasks + 1;
        let spawn = ClientSpawn {
            config: &config_path,
            first_id,
            tasks,
            resource: resource.address(),
            hold_max: settings.hold_max,
            ttl: scenario.ttl(),
            log: &settings.out.join(format!("{cell}-client-{first_id}.log")),
            faketime: faketime.as_deref(),
        };
        clients.push(spawn.start(Arc::clone(&history))?);
    }

    let mut interrupt = settings.interrupt.clone();
    let body = async {
        let warm = first_grant(&history, &mut clients).await?;
        let mut nemesis = Nemesis {
            servers,
            backend,
            scenario,
            history: &history,
            clients: &mut clients,
            proxy: proxy.as_ref(),
            faketime: faketime.as_deref(),
        };
        // The baseline's share of the run before the fault: its grant rate
        // is the one the fault's are compared with.
        tokio::time::sleep(settings.duration.mul_f64(BEFORE_FAULT)).await;
        nemesis.inject().await?;
        let end = (warm + settings.duration).max(Instant::now() + AFTER_FAULT);
        // The clients work on until the run's end (its figures after the fault).
        tokio::time::sleep_until(end.into()).await;
        Ok::<_, String>(warm)
    };
    let outcome = tokio::select! {
        outcome = body => outcome,
        _ = interrupt.wait_for(|interrupted| *interrupted) => Err(INTERRUPTED.to_owned()),
    };
    if outcome.is_err() {
        // A fault cut short (an error, an interrupt) is healed before anything else.
        crate::nemesis::heal(servers, backend, scenario).await;
    }
    let warm_seconds = outcome.as_ref().map(|warm| warm.elapsed().as_secs_f64());
    stop(&mut clients).await;
    let free = match &outcome {
        Ok(_) => free_after(&config, backend.lease_bound(scenario)).await,
        Err(_) => None,
    };
    let restored = if failover {
        crate::nemesis::restore_failover_pair(servers).await
    } else {
        Ok(())
    };
    let seconds = warm_seconds?;
    restored?;
    drop(resource);

    let events = history
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    let history_path = settings.out.join(format!("{cell}.jsonl"));
    let mut text = String::new();
    for event in &events {
        text.push_str(&serde_json::to_string(event).map_err(|error| error.to_string())?);
        text.push('\n');
    }
    write(&history_path, &text)?;
    let report = history::check(&events);
    let promise = Promise::of(backend, scenario);
    let kept = promise.kept_by(&report) && free.is_some();
    Ok(Outcome {
        backend,
        scenario,
        clients: settings.clients,
        seconds,
        report,
        leaked: free.is_none(),
        free_after_ms: free.map(|free| free.as_secs_f64() * 1e3),
        promise,
        kept,
        history: history_path,
    })
}

/// Creates the `--out` folder.
pub fn create_out(out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|error| format!("--out {}: {error}", out.display()))
}

/// The `application_name` of this harness's PostgreSQL sessions.
pub(crate) fn application_name() -> String {
    format!("lockkit-safety-{}", std::process::id())
}

/// The run's lockkit configuration: the URL, a namespace of its own, and
/// the shortest session each consensus backend accepts.
fn configuration(url: &str, backend: Backend, scenario: Scenario) -> String {
    let mut config = format!(
        "url = {}\nnamespace = \"safety-{}-{}\"\n",
        toml_string(url),
        std::process::id(),
        now_ns()
    );
    let session = humantime::format_duration(SESSION);
    match backend {
        Backend::Etcd => config.push_str(&format!("[etcd]\nsession_ttl = \"{session}\"\n")),
        Backend::Zk => config.push_str(&format!("[zk]\nsession_timeout = \"{session}\"\n")),
        _ => {}
    }
    if scenario == Scenario::FailoverMinReplicas {
        config.push_str("[redis]\nmin_replicas = 1\n");
    }
    config
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|error| format!("{}: {error}", path.display()))
}

struct ClientSpawn<'a> {
    config: &'a Path,
    first_id: u32,
    tasks: u32,
    resource: std::net::SocketAddr,
    hold_max: Duration,
    ttl: Duration,
    log: &'a Path,
    faketime: Option<&'a Path>,
}

/// libfaketime's library, as Debian's `faketime` package installs it.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

impl ClientSpawn<'_> {
    fn start(self, history: Arc<Mutex<Vec<Event>>>) -> Result<ClientProcess, String> {
        let program =
            std::env::current_exe().map_err(|error| format!("this program's path: {error}"))?;
        let log = std::fs::File::create(self.log)
            .map_err(|error| format!("{}: {error}", self.log.display()))?;
        let mut command = Command::new(program);
        command
            .arg("client")
            .arg("--config")
            .arg(self.config)
            .args(["--name", NAME])
            .args(["--first-id", &self.first_id.to_string()])
            .args(["--tasks", &self.tasks.to_string()])
            .args(["--resource", &self.resource.to_string()])
            .args(["--ttl", &humantime::format_duration(self.ttl).to_string()])
            .args([
                "--hold-max",
                &humantime::format_duration(self.hold_max).to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        if let Some(file) = self.faketime {
            if !Path::new(LIBFAKETIME).exists() {
                return Err(format!(
                    "the clock-jump scenario needs libfaketime ({LIBFAKETIME}): \
                     `scripts/services install` installs it"
                ));
            }
            command
                .env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME_TIMESTAMP_FILE", file)
                .env("FAKETIME_NO_CACHE", "1")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let mut child = command
            .spawn()
            .map_err(|error| format!("a client process: {error}"))?;
        let pid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .ok_or("a client process exited at once")?;
        let stdout = child.stdout.take().ok_or("a client's stdout")?;
        let first_id = self.first_id;
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Event>(&line) {
                    Ok(event) => history
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .push(event),
                    Err(error) => eprintln!("client {first_id} printed {line:?}: {error}"),
                }
            }
        });
        Ok(ClientProcess {
            first_id,
            pid,
            log: self.log.to_path_buf(),
            stdin: child.stdin.take(),
            child,
            reader,
        })
    }
}

/// Waits for the first grant; fails naming a client that exited.
async fn first_grant(
    history: &Mutex<Vec<Event>>,
    clients: &mut [ClientProcess],
) -> Result<Instant, String> {
    let deadline = Instant::now() + FIRST_GRANT;
    loop {
        let granted = history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .any(|event| matches!(event, Event::Granted { .. }));
        if granted {
            return Ok(Instant::now());
        }
        for client in clients.iter_mut() {
            if let Ok(Some(status)) = client.child.try_wait() {
                let last = std::fs::read_to_string(&client.log)
                    .ok()
                    .and_then(|log| log.lines().last().map(str::to_owned))
                    .unwrap_or_default();
                return Err(format!(
                    "client {} exited ({status}) before any grant: {last} (log: {})",
                    client.first_id,
                    client.log.display()
                ));
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no client acquired within {FIRST_GRANT:?}"));
        }
        // Polled: the clients' events arrive through their readers.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Tells every client to stop, waits for each, kills one that does not exit.
async fn stop(clients: &mut [ClientProcess]) {
    for client in clients.iter_mut() {
        // A client the nemesis stopped (SIGSTOP) must run to hear `stop`.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(client.pid),
            nix::sys::signal::Signal::SIGCONT,
        );
        client.command("stop").await;
        client.stdin = None;
    }
    for client in clients.iter_mut() {
        if tokio::time::timeout(STOP, client.child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "lockkit-safety: client {} did not stop within {STOP:?}; killed",
                client.first_id
            );
            let _ = client.child.kill().await;
        }
        let _ = (&mut client.reader).await;
    }
}

/// After the clients stopped: how soon a fresh client acquires the name;
/// `None` if it is still held past every lease and session (a leak).
/// An acquire that fails (a server still coming back, a replica still
/// syncing) is tried again until then.
async fn free_after(config: &str, lease_bound: Duration) -> Option<Duration> {
    let config = LockConfig::from_toml(config).ok()?;
    let started = Instant::now();
    // A killed holder's lease or session must run out: three of it, plus
    // the time a restarted server or a resyncing replica needs.
    let deadline = started + lease_bound * 3 + Duration::from_secs(10);
    let locks = loop {
        match lockkit::connect(config.clone()).await {
            Ok(locks) => break locks,
            Err(_) if Instant::now() < deadline => {
                // Polled: a server coming back says nothing of when.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(_) => return None,
        }
    };
    let free = loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match locks
            .acquire(NAME, Acquire::ttl(lease_bound).wait(wait))
            .await
        {
            Ok(lease) => {
                let free = started.elapsed();
                let _ = lease.release().await;
                break Some(free);
            }
            Err(_) if Instant::now() < deadline => {
                // Polled: a refused acquire (not a wait) says nothing of when to retry.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(_) => break None,
        }
    };
    let _ = locks.close().await;
    free
}
