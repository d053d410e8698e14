//! The `lockkit` command, run as a user runs it — the binary itself, in
//! its own processes — against the real servers of `scripts/services`.
//! Each backend whose `LOCKKIT_TEST_*` variable is set is used; a missing
//! one skips loudly, or fails under `LOCKKIT_TEST_REQUIRE=1`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use lockkit_testkit::{server_from_env, unique_namespace};
use serde_json::Value;

/// How long any one `lockkit` process may take before the test gives up on it.
const PATIENCE: Duration = Duration::from_secs(60);

/// One backend as the command reaches it.
#[derive(Debug, Clone)]
struct Backend {
    name: &'static str,
    url: String,
}

impl Backend {
    fn session(&self) -> bool {
        matches!(self.name, "postgres" | "etcd" | "zk")
    }

    /// Whether `status` reads the holder's token on this backend.
    fn reads_token(&self) -> bool {
        matches!(self.name, "etcd" | "zk")
    }
}

/// Every network backend the environment names, as `lockkit` URLs.
fn network_backends() -> Vec<Backend> {
    let mut backends = Vec::new();
    if let Some(url) = server_from_env("LOCKKIT_TEST_REDIS_URL") {
        backends.push(Backend { name: "redis", url });
    }
    if let Some(urls) = server_from_env("LOCKKIT_TEST_REDLOCK_URLS") {
        let nodes: Vec<&str> = urls
            .split(',')
            .map(|url| url.trim().trim_start_matches("redis://"))
            .collect();
        let url = format!("redlock://{}", nodes.join(","));
        backends.push(Backend {
            name: "redlock",
            url,
        });
    }
    if let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") {
        backends.push(Backend {
            name: "postgres",
            url,
        });
    }
    if let Some(endpoints) = server_from_env("LOCKKIT_TEST_ETCD_ENDPOINTS") {
        let url = format!("etcd://{}", endpoints.replace("http://", ""));
        backends.push(Backend { name: "etcd", url });
    }
    if let Some(connect) = server_from_env("LOCKKIT_TEST_ZK_CONNECT") {
        let url = format!("zk://{connect}");
        backends.push(Backend { name: "zk", url });
    }
    backends
}

fn memory() -> Backend {
    Backend {
        name: "memory",
        url: "memory://".to_owned(),
    }
}

/// The `lockkit` binary, configured through the environment as a
/// deployment would (`LOCKKIT_URL`, a namespace of this test's own, short
/// sessions so a killed holder's session ends soon), with no other
/// `LOCKKIT_*` variable of the test run.
fn lockkit(backend: &Backend, namespace: &str) -> Command {
    let mut command = bare_lockkit();
    command
        .env("LOCKKIT_URL", &backend.url)
        .env("LOCKKIT_NAMESPACE", namespace);
    match backend.name {
        "etcd" => {
            command.env("LOCKKIT_ETCD_SESSION_TTL", "3s");
        }
        "zk" => {
            command.env("LOCKKIT_ZK_SESSION_TIMEOUT", "4s");
        }
        _ => {}
    }
    command
}

/// The binary with no `LOCKKIT_*` variable at all.
fn bare_lockkit() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lockkit"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LOCKKIT_") {
            command.env_remove(name);
        }
    }
    command.stdin(Stdio::null());
    command
}

/// Runs `command` to its end — within [`PATIENCE`], or the test fails.
fn finish(mut command: Command) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the lockkit binary starts");
    let id = child.id();
    let (done, outcome) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match outcome.recv_timeout(PATIENCE) {
        Ok(output) => output.expect("lockkit's output"),
        Err(_) => {
            stop(id);
            panic!("lockkit (pid {id}) ran past {PATIENCE:?}");
        }
    }
}

/// Kills a lockkit that ran too long, and its program first: in a process
/// group of its own, the program would outlive it (and hold the test's
/// output open).
fn stop(lockkit: u32) {
    let _ = Command::new("pkill")
        .args(["-KILL", "-P", &lockkit.to_string()])
        .status();
    let _ = Command::new("kill")
        .args(["-KILL", &lockkit.to_string()])
        .status();
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[track_caller]
fn assert_status(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: exit status; stdout {:?}, stderr {:?}",
        stdout(output),
        stderr(output)
    );
}

/// A name no other test or run uses.
fn unique_name(what: &str) -> String {
    format!("cli-{what}-{}", &unique_namespace()[13..25])
}

/// A `lockkit run` holding a lock while its program waits for a line on
/// stdin (or its end).
struct Holding {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The program's `LOCKKIT_FENCING_TOKEN`.
    token: u64,
    /// The program's pid (it runs in a process group of its own).
    program: u32,
}

impl Holding {
    /// Starts `lockkit run [extra] NAME -- sh …` and returns once the program runs.
    fn start(backend: &Backend, namespace: &str, name: &str, extra: &[&str]) -> Self {
        let mut command = lockkit(backend, namespace);
        command
            .arg("run")
            .args(extra)
            .arg(name)
            .args(["--", "sh", "-c"])
            .arg(r#"echo "ready $LOCKKIT_FENCING_TOKEN $$"; read line"#)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("the lockkit binary starts");
        let stdin = child.stdin.take();
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the program's first line");
        let mut words = line.split_whitespace();
        assert_eq!(
            words.next(),
            Some("ready"),
            "{}: lockkit run did not start the program: {line:?}",
            backend.name
        );
        let token = words.next().and_then(|token| token.parse().ok());
        let program = words.next().and_then(|pid| pid.parse().ok());
        Self {
            child,
            stdin,
            token: token.expect("a fencing token in the program's environment"),
            program: program.expect("the program's pid"),
        }
    }

    /// Lets the program exit (its `read` ends) and returns lockkit's status.
    fn let_go(mut self) -> ExitStatus {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"done\n");
        }
        wait_within(&mut self.child, PATIENCE)
    }
}

/// Waits for `child`, failing the test past `within`. std has no timed
/// wait on a child, so this looks every 20 ms.
fn wait_within(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait for lockkit") {
            return status;
        }
        if Instant::now() > deadline {
            stop(child.id());
            panic!("lockkit (pid {}) ran past {within:?}", child.id());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn status_json(backend: &Backend, namespace: &str, name: &str) -> Value {
    let mut command = lockkit(backend, namespace);
    command.args(["status", "--json", name]);
    let output = finish(command);
    assert_status(&output, 0, &format!("{}: status --json", backend.name));
    let parsed: Value = serde_json::from_str(&stdout(&output)).expect("status prints JSON");
    parsed[0].clone()
}

#[test]
fn the_readme_command_prints_a_fencing_token() {
    let Some(url) = server_from_env("LOCKKIT_TEST_REDIS_URL") else {
        return;
    };
    let mut command = bare_lockkit();
    command
        .args(["run", "--url", &url, &unique_name("nightly-report")])
        .args(["--", "sh", "-c", "echo $LOCKKIT_FENCING_TOKEN"]);
    let output = finish(command);
    assert_status(&output, 0, "run");
    let token: u64 = stdout(&output)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a token: {:?}", stdout(&output)));
    assert!(token >= 1);
}

#[test]
fn run_hands_the_program_the_lock_name_token_and_backend_and_releases_it() {
    for backend in std::iter::once(memory()).chain(network_backends()) {
        let namespace = unique_namespace();
        let name = unique_name("environment");
        let mut command = lockkit(&backend, &namespace);
        command
            .args(["run", &name, "--", "sh", "-c"])
            .arg(r#"echo "$LOCKKIT_LOCK_NAME|$LOCKKIT_FENCING_TOKEN|$LOCKKIT_BACKEND""#);
        let output = finish(command);
        assert_status(&output, 0, backend.name);
        let printed = stdout(&output);
        let fields: Vec<&str> = printed.trim().split('|').collect();
        assert_eq!(fields.len(), 3, "{}: {printed:?}", backend.name);
        assert_eq!(fields[0], name, "{}", backend.name);
        assert!(
            fields[1].parse::<u64>().is_ok_and(|token| token >= 1),
            "{}: token {:?}",
            backend.name,
            fields[1]
        );
        assert_eq!(fields[2], backend.name);
        if backend.name != "memory" {
            // Released, not left to expire: free at once (the TTL is 30 s).
            let read = status_json(&backend, &namespace, &name);
            assert_eq!(read["state"], "free", "{}: {read}", backend.name);
        }
    }
}

#[test]
fn two_runs_on_one_name_never_overlap_and_their_tokens_increase() {
    const RUNS: usize = 3;
    for backend in network_backends() {
        let namespace = unique_namespace();
        let name = unique_name("overlap");
        let marks = std::env::temp_dir().join(format!("lockkit-cli-{name}.marks"));
        let runners: Vec<_> = (0..2)
            .map(|_| {
                let (backend, namespace, name, marks) =
                    (backend.clone(), namespace.clone(), name.clone(), marks.clone());
                thread::spawn(move || {
                    for _ in 0..RUNS {
                        let mut command = lockkit(&backend, &namespace);
                        command
                            .args(["run", "--wait", "50s", &name, "--", "sh", "-c"])
                            .arg(
                                r#"echo "start $LOCKKIT_FENCING_TOKEN" >> "$MARKS"; sleep 0.2; echo "stop $LOCKKIT_FENCING_TOKEN" >> "$MARKS""#,
                            )
                            .env("MARKS", &marks);
                        let output = finish(command);
                        assert_status(&output, 0, backend.name);
                    }
                })
            })
            .collect();
        for runner in runners {
            runner.join().expect("a runner");
        }
        check_marks(&backend, &marks, RUNS * 2);
        let _ = std::fs::remove_file(&marks);
    }
}

/// The marks of `runs` programs: each start followed by its own stop
/// (never another's start between), tokens strictly increasing.
fn check_marks(backend: &Backend, marks: &PathBuf, runs: usize) {
    let text = std::fs::read_to_string(marks).expect("the marks file");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), runs * 2, "{}: {text}", backend.name);
    let mut last = 0u64;
    for pair in lines.chunks(2) {
        let start = pair[0].strip_prefix("start ");
        let stop = pair[1].strip_prefix("stop ");
        assert!(
            start.is_some() && start == stop,
            "{}: two holders overlapped: {pair:?} in\n{text}",
            backend.name
        );
        let token: u64 = start.and_then(|t| t.parse().ok()).expect("a token");
        assert!(
            token > last,
            "{}: token {token} after {last}\n{text}",
            backend.name
        );
        last = token;
    }
}

#[test]
fn a_held_lock_is_not_acquired_exit_75_naming_the_holder() {
    for backend in network_backends() {
        let namespace = unique_namespace();
        let name = unique_name("held");
        let holding = Holding::start(&backend, &namespace, &name, &[]);

        let mut command = lockkit(&backend, &namespace);
        command.args(["run", "--no-wait", &name, "--", "true"]);
        let output = finish(command);
        assert_status(&output, 75, &format!("{}: --no-wait", backend.name));
        let said = stderr(&output);
        assert_eq!(said.lines().count(), 1, "{}: {said}", backend.name);
        assert!(said.contains("holder:"), "{}: {said}", backend.name);
        if backend.reads_token() {
            assert!(
                said.contains(&format!("token {}", holding.token)),
                "{}: the line does not name the holder's token {}: {said}",
                backend.name,
                holding.token
            );
        }

        let mut command = lockkit(&backend, &namespace);
        command.args(["run", "--wait", "300ms", &name, "--", "true"]);
        let started = Instant::now();
        let output = finish(command);
        assert_status(&output, 75, &format!("{}: --wait 300ms", backend.name));
        assert!(
            stderr(&output).contains("not acquired within 300ms"),
            "{}: {}",
            backend.name,
            stderr(&output)
        );
        assert!(started.elapsed() >= Duration::from_millis(300));

        assert!(holding.let_go().success(), "{}", backend.name);
    }
}

#[test]
fn status_shows_the_holder_of_a_name_another_process_holds() {
    for backend in network_backends() {
        let namespace = unique_namespace();
        let name = unique_name("status");
        let holding = Holding::start(&backend, &namespace, &name, &[]);
        let read = status_json(&backend, &namespace, &name);
        let what = format!("{}: {read}", backend.name);
        assert_eq!(read["name"], name.as_str(), "{what}");
        assert_eq!(read["state"], "held", "{what}");
        if backend.reads_token() {
            assert_eq!(read["token"], holding.token, "{what}");
        } else {
            assert!(read["token"].is_null(), "{what}");
        }
        assert_eq!(read["session"], backend.session(), "{what}");
        if backend.session() {
            assert!(read["expires_in_ms"].is_null(), "{what}");
        } else {
            let left = read["expires_in_ms"].as_u64().expect("a remaining TTL");
            assert!(left > 0 && left <= 30_000, "{what}");
        }
        let who = read["holder"].as_str().unwrap_or_default();
        match backend.name {
            "postgres" => assert!(who.starts_with("backend pid "), "{what}"),
            "etcd" => assert!(who.starts_with("etcd lease "), "{what}"),
            "zk" => {
                assert!(who.starts_with("ZooKeeper session 0x"), "{what}");
                assert!(read["since"].is_null(), "{what}");
                assert!(read["queued_since"].is_string(), "{what}");
            }
            _ => assert!(read["holder"].is_null(), "{what}"),
        }

        let mut command = lockkit(&backend, &namespace);
        command.args(["status", &name, &format!("{name}-other")]);
        let output = finish(command);
        assert_status(&output, 0, backend.name);
        let lines: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 2, "{}: {lines:?}", backend.name);
        assert!(lines[0].starts_with(&format!("{name}: held")), "{lines:?}");
        assert_eq!(lines[1], format!("{name}-other: free"));

        assert!(holding.let_go().success(), "{}", backend.name);
        let read = status_json(&backend, &namespace, &name);
        assert_eq!(read["state"], "free", "{}: {read}", backend.name);
    }
}

#[test]
fn a_lease_lost_while_the_program_runs_stops_it_and_exits_70() {
    let ttl_backends = std::iter::once(memory())
        .chain(network_backends())
        .filter(|backend| !backend.session());
    for backend in ttl_backends {
        let namespace = unique_namespace();
        let name = unique_name("lost");
        let mut command = lockkit(&backend, &namespace);
        // The program ignores SIGTERM, so it takes the SIGKILL --kill-after later.
        command
            .args(["run", "--ttl", "1s", "--no-renew", "--kill-after", "500ms"])
            .args([
                &name,
                "--",
                "sh",
                "-c",
                "trap '' TERM; sleep 30; echo ran-on",
            ]);
        let started = Instant::now();
        let output = finish(command);
        let took = started.elapsed();
        assert_status(&output, 70, backend.name);
        let said = stderr(&output);
        assert!(
            said.contains(&format!("lost the lock `{name}`")) && said.contains(" at 20"),
            "{}: the line does not say the lock was lost, and when: {said}",
            backend.name
        );
        assert!(
            !stdout(&output).contains("ran-on"),
            "{}: the program ran on",
            backend.name
        );
        assert!(
            took < Duration::from_secs(20),
            "{}: stopped only after {took:?}",
            backend.name
        );
    }
}

#[test]
fn the_programs_own_status_comes_back() {
    let backend = memory();
    let namespace = unique_namespace();
    for (program, code) in [
        ("exit 0", 0),
        ("exit 7", 7),
        ("kill -9 $$", 137),
        ("exit 255", 255),
    ] {
        let mut command = lockkit(&backend, &namespace);
        command.args(["run", "job", "--", "sh", "-c", program]);
        assert_status(&finish(command), code, program);
    }
    let mut command = lockkit(&backend, &namespace);
    command.args(["run", "job", "--", "/nonexistent/program"]);
    let output = finish(command);
    assert_status(&output, 127, "a program that does not exist");
    assert!(stderr(&output).contains("/nonexistent/program"));
}

#[test]
fn bad_arguments_exit_64_with_one_line_naming_the_field() {
    let backend = memory();
    let namespace = unique_namespace();
    let cases: [(&[&str], &str); 6] = [
        (
            &["run", "--ttl", "abc", "job", "--", "true"],
            "expected a duration like 30s, got `abc`",
        ),
        (&["run", "--wait", "soon", "job", "--", "true"], "--wait"),
        (&["run", "--ttl", "0s", "job", "--", "true"], "ttl"),
        (&["run", "job"], "PROGRAM"),
        (
            &["run", "--no-wait", "--wait", "1s", "job", "--", "true"],
            "--wait",
        ),
        (&["status", ""], "name"),
    ];
    for (arguments, names) in cases {
        let mut command = lockkit(&backend, &namespace);
        command.args(arguments);
        let output = finish(command);
        assert_status(&output, 64, &format!("{arguments:?}"));
        let said = stderr(&output);
        assert_eq!(said.lines().count(), 1, "{arguments:?}: {said}");
        assert!(said.contains(names), "{arguments:?}: {said}");
        assert!(!said.contains("lockkit: lockkit:"), "{said}");
        if arguments[1] == "--ttl" && arguments[2] == "abc" {
            assert!(said.contains("--ttl"), "{said}");
        }
    }
    let mut command = bare_lockkit();
    command.args(["status", "job"]);
    let output = finish(command);
    assert_status(&output, 64, "no backend");
    assert!(stderr(&output).contains("LOCKKIT_URL"));
    let mut command = bare_lockkit();
    command.args(["status", "--url", "nosuch://host", "job"]);
    assert_status(&finish(command), 64, "an unknown scheme");
}

#[test]
fn an_unreachable_backend_exits_69_and_never_shows_the_password() {
    for url in [
        "redis://:hunter2@127.0.0.1:1",
        "postgres://lockkit:hunter2@127.0.0.1:1/lockkit",
    ] {
        for arguments in [
            &["run", "--url", url, "job", "--", "true"][..],
            &["status", "--url", url, "job"],
            &["check", "--url", url],
        ] {
            let mut command = bare_lockkit();
            command.args(arguments);
            let output = finish(command);
            assert_status(&output, 69, &format!("{arguments:?}"));
            let said = format!("{}{}", stdout(&output), stderr(&output));
            assert!(!said.contains("hunter2"), "{arguments:?}: {said}");
            assert_eq!(said.lines().count(), 1, "{arguments:?}: {said}");
        }
    }
}

#[test]
fn a_killed_lockkit_leaves_the_lock_free_by_its_ttl_or_session_end() {
    for backend in network_backends() {
        let namespace = unique_namespace();
        let name = unique_name("killed");
        let mut holding = Holding::start(&backend, &namespace, &name, &["--ttl", "2s"]);
        holding.child.kill().expect("SIGKILL lockkit");
        holding.child.wait().expect("reap lockkit");
        // The program runs on in its own group: nothing stops it now.
        let _ = Command::new("kill")
            .arg(holding.program.to_string())
            .status();
        let mut command = lockkit(&backend, &namespace);
        command.args(["run", "--wait", "40s", &name, "--", "true"]);
        let output = finish(command);
        assert_status(
            &output,
            0,
            &format!("{}: after the holder was killed", backend.name),
        );
    }
}

/// Runs `script` under `lockkit run`, sends `signal` to lockkit once the
/// program printed `ready`, and returns lockkit's status and the program's
/// later lines.
fn signal_run(
    backend: &Backend,
    namespace: &str,
    name: &str,
    script: &str,
    signal: &str,
) -> (ExitStatus, Vec<String>) {
    let mut command = lockkit(backend, namespace);
    command
        .args(["run", name, "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().expect("lockkit starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = wait_within(&mut child, PATIENCE);
    (status, lines.map_while(Result::ok).collect())
}

#[test]
fn signals_to_lockkit_reach_the_program_and_the_lock_is_released_after() {
    let Some(backend) = network_backends().into_iter().next() else {
        return;
    };
    let namespace = unique_namespace();
    let name = unique_name("signal");
    let (status, later) = signal_run(
        &backend,
        &namespace,
        &name,
        "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done",
        "-TERM",
    );
    assert_eq!(status.code(), Some(3), "the program's own status");
    assert_eq!(later, ["got-term"]);
    // Released, not expired: its TTL was 30 s.
    let read = status_json(&backend, &namespace, &name);
    assert_eq!(read["state"], "free", "{read}");

    // A signal with no meaning to lockkit is the program's too: it does
    // not end lockkit and leave the program running without the lock.
    let (status, _) = signal_run(
        &backend,
        &namespace,
        &name,
        "trap 'exit 5' USR1; echo ready; while :; do sleep 0.05; done",
        "-USR1",
    );
    assert_eq!(status.code(), Some(5));
}

#[test]
fn check_prints_what_the_backend_promises_and_times_a_probe() {
    for backend in std::iter::once(memory()).chain(network_backends()) {
        let namespace = unique_namespace();
        let mut command = lockkit(&backend, &namespace);
        command.arg("check");
        let output = finish(command);
        assert_status(&output, 0, backend.name);
        let printed = stdout(&output);
        assert!(
            printed.contains(&format!("backend    {}\n", backend.name)),
            "{printed}"
        );
        for field in ["safety", "fencing", "lease", "waiting", "server", "probe"] {
            assert!(
                printed.lines().any(|line| line.starts_with(field)),
                "{}: no {field}: {printed}",
                backend.name
            );
        }
        let class = if matches!(backend.name, "redis" | "redlock") {
            "efficiency"
        } else {
            "correctness"
        };
        assert!(
            printed.contains(&format!("safety     {class}")),
            "{printed}"
        );
        if backend.name != "memory" {
            assert!(
                !printed.contains("server     not reported"),
                "{}: {printed}",
                backend.name
            );
        }
    }
}

#[test]
fn check_shows_the_url_without_its_password() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    // The test server trusts local connections, so any password works.
    let with_password = url.replacen('@', ":hunter2@", 1);
    let mut command = bare_lockkit();
    command.args(["check", "--url", &with_password]);
    let output = finish(command);
    assert_status(&output, 0, "check");
    let said = format!("{}{}", stdout(&output), stderr(&output));
    assert!(!said.contains("hunter2"), "{said}");
    assert!(said.contains("url        postgres://"), "{said}");
}

#[test]
fn a_configuration_file_names_the_backend() {
    let Some(url) = server_from_env("LOCKKIT_TEST_REDIS_URL") else {
        return;
    };
    let namespace = unique_namespace();
    let file = std::env::temp_dir().join(format!("{namespace}.toml"));
    std::fs::write(
        &file,
        format!("url = \"{url}\"\nnamespace = \"{namespace}\"\ndefault_ttl = \"10s\"\n"),
    )
    .expect("write the configuration");
    let mut command = bare_lockkit();
    command.arg("--config").arg(&file).args([
        "run",
        "configured",
        "--",
        "sh",
        "-c",
        "echo $LOCKKIT_BACKEND",
    ]);
    let output = finish(command);
    assert_status(&output, 0, "run --config");
    assert_eq!(stdout(&output).trim(), "redis");

    std::fs::write(&file, "url = \"redis://127.0.0.1\"\nnamespaces = \"x\"\n")
        .expect("write the configuration");
    let mut command = bare_lockkit();
    command.arg("--config").arg(&file).args(["status", "x"]);
    let output = finish(command);
    assert_status(&output, 64, "an unknown field");
    assert!(
        stderr(&output).contains("namespaces"),
        "{}",
        stderr(&output)
    );
    let _ = std::fs::remove_file(&file);
}

#[test]
fn help_reads_like_a_manual() {
    let mut command = bare_lockkit();
    command.arg("--help");
    let output = finish(command);
    assert_status(&output, 0, "--help");
    let help = stdout(&output);
    for section in [
        "EXIT STATUS",
        "ENVIRONMENT",
        "EXAMPLES",
        "LOCKKIT_URL",
        "75",
    ] {
        assert!(help.contains(section), "no {section} in:\n{help}");
    }
    let mut command = bare_lockkit();
    command.args(["run", "--help"]);
    let help = stdout(&finish(command));
    assert!(help.contains("LOCKKIT_FENCING_TOKEN"), "{help}");
}

#[test]
fn processes_the_program_started_get_the_sigkill_after_a_lost_lease() {
    let backend = memory();
    let namespace = unique_namespace();
    let pids = std::env::temp_dir().join(format!("{namespace}.pid"));
    let mut command = lockkit(&backend, &namespace);
    // The program's own process exits at SIGTERM; the one it started
    // ignores SIGTERM and would run on without the lock. (It lets go of
    // lockkit's output, so this test sees lockkit end, not it.)
    command
        .args([
            "run",
            "--ttl",
            "300ms",
            "--no-renew",
            "--kill-after",
            "300ms",
        ])
        .args(["job", "--", "sh", "-c"])
        .arg(r#"sh -c 'trap "" TERM; echo $$ > "$PIDS"; exec sleep 30 >/dev/null 2>&1' & wait"#)
        .env("PIDS", &pids);
    let output = finish(command);
    assert_status(&output, 70, "a lost lease");
    let survivor = std::fs::read_to_string(&pids).expect("the started process wrote its pid");
    // Killed, it is gone or a zombie no one has reaped yet (state Z).
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", survivor.trim()));
    let running = stat.is_ok_and(|stat| {
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
        state != Some(Some('Z'))
    });
    let _ = std::fs::remove_file(&pids);
    assert!(
        !running,
        "process {} of the program's group outlived the announced SIGKILL",
        survivor.trim()
    );
}

#[test]
fn a_program_ended_by_sigint_ends_lockkit_by_sigint() {
    use std::os::unix::process::ExitStatusExt;
    let backend = memory();
    let mut command = lockkit(&backend, &unique_namespace());
    command.args(["run", "job", "--", "sh", "-c", "kill -INT $$"]);
    let output = finish(command);
    assert_eq!(
        output.status.signal(),
        Some(2),
        "a shell loop around lockkit run would not stop at Ctrl-C: {:?}",
        output.status
    );
}

#[test]
fn run_takes_its_ttl_from_the_configuration_unless_given() {
    let Some(url) = server_from_env("LOCKKIT_TEST_REDIS_URL") else {
        return;
    };
    let backend = Backend { name: "redis", url };
    let namespace = unique_namespace();
    let mut command = lockkit(&backend, &namespace);
    command
        .env("LOCKKIT_DEFAULT_TTL", "5m")
        .args(["run", "configured-ttl", "--", "sh", "-c"])
        .arg(r#"lockkit_status=$("$LOCKKIT" status --json configured-ttl); echo "$lockkit_status""#)
        .env("LOCKKIT", env!("CARGO_BIN_EXE_lockkit"));
    let output = finish(command);
    assert_status(&output, 0, "run");
    let read: Value = serde_json::from_str(stdout(&output).trim()).expect("status JSON");
    let left = read[0]["expires_in_ms"].as_u64().expect("a TTL");
    assert!(left > 60_000, "default_ttl 5m was not used: {left} ms left");
}

#[test]
fn output_that_cannot_be_written_is_one_line_and_status_74() {
    let mut command = lockkit(&memory(), &unique_namespace());
    command.args(["status", "job"]);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    command.stdout(full).stderr(Stdio::piped());
    let output = command.output().expect("lockkit runs");
    assert_eq!(output.status.code(), Some(74), "{:?}", stderr(&output));
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
}

/// A TCP forwarder that can cut its connections half-open: the server's
/// side is closed, the client's stays open and silent — as behind a
/// failed middlebox, where no TCP keepalive ever fails.
struct HalfOpenProxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    upstreams: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl HalfOpenProxy {
    fn start(target: String) -> Self {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("its address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let upstreams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut_flag, registry) = (Arc::clone(&cut), Arc::clone(&upstreams));
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                if let Ok(copy) = server.try_clone() {
                    registry.lock().expect("registry").push(copy);
                }
                let (mut client_in, mut server_out) = match (client.try_clone(), server.try_clone())
                {
                    (Ok(a), Ok(b)) => (a, b),
                    _ => continue,
                };
                let (mut server_in, mut client_out) = (server, client);
                let cut = Arc::clone(&cut_flag);
                thread::spawn(move || {
                    let mut buffer = [0u8; 8192];
                    // After the cut, what the client sends goes nowhere.
                    while let Ok(n) = std::io::Read::read(&mut client_in, &mut buffer) {
                        if n == 0 {
                            break;
                        }
                        if !cut.load(Ordering::SeqCst) {
                            let _ = server_out.write_all(&buffer[..n]);
                        }
                    }
                });
                thread::spawn(move || {
                    let _ = std::io::copy(&mut server_in, &mut client_out);
                    // The server's side ended: the client's stays open,
                    // silent, until the client closes it.
                    let mut hold = [0u8; 1];
                    let _ = std::io::Read::read(&mut client_out, &mut hold);
                });
            }
        });
        Self {
            port,
            cut,
            upstreams,
        }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for stream in self.upstreams.lock().expect("registry").iter() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[test]
fn a_postgres_session_cut_off_half_open_stops_the_program_and_exits_70() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    let (_, after_host) = url.rsplit_once('@').expect("user@host in the test URL");
    let (address, _) = after_host
        .split_once('/')
        .expect("a database in the test URL");
    let proxy = HalfOpenProxy::start(address.to_owned());
    let backend = Backend {
        name: "postgres",
        url: url.replacen(address, &format!("127.0.0.1:{}", proxy.port), 1),
    };
    let namespace = unique_namespace();
    let mut command = lockkit(&backend, &namespace);
    command
        .env("LOCKKIT_POSTGRES_RESPONSE_TIMEOUT", "2s")
        .args([
            "run",
            "--ttl",
            "3s",
            "--kill-after",
            "1s",
            "cut-off",
            "--",
            "sh",
            "-c",
        ])
        .arg("echo ready; sleep 30; echo ran-on")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("lockkit starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));
    let cut_at = Instant::now();
    proxy.cut();
    let status = wait_within(&mut child, PATIENCE);
    let took = cut_at.elapsed();
    assert_eq!(
        status.code(),
        Some(70),
        "a lock lost half-open went unnoticed"
    );
    assert!(
        took < Duration::from_secs(15),
        "noticed only {took:?} after the cut"
    );
    assert!(lines.next().is_none(), "the program ran on");
}
