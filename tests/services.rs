//! The servers of `scripts/services` answer on the addresses the test
//! variables name, and the clusters have a leader. Each check speaks the
//! server's own protocol (no driver is needed); a missing variable skips,
//! or fails under LOCKKIT_TEST_REQUIRE=1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use lockkit_testkit::server_from_env;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `request` to `address` and returns everything the server sends
/// back until it closes or `until` is seen.
fn exchange(address: &str, request: &[u8], until: &str) -> String {
    let mut stream =
        TcpStream::connect(address).unwrap_or_else(|error| panic!("{address}: {error}"));
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(request).unwrap();
    let mut reply = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&buffer[..n]);
                if String::from_utf8_lossy(&reply).contains(until) {
                    break;
                }
            }
            Err(error) => panic!(
                "{address}: no complete reply ({error}); got {:?}",
                String::from_utf8_lossy(&reply)
            ),
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

/// `host:port` of a `scheme://host:port[/…]` URL.
fn address(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split('/').next().unwrap()
}

fn redis_info(url: &str) -> String {
    exchange(address(url), b"INFO replication\r\n", "\r\n\r\n")
}

#[test]
fn redis_answers() {
    let Some(url) = server_from_env("LOCKKIT_TEST_REDIS_URL") else {
        return;
    };
    assert_eq!(exchange(address(&url), b"PING\r\n", "\r\n"), "+PONG\r\n");
}

#[test]
fn redlock_has_five_independent_primaries() {
    let Some(urls) = server_from_env("LOCKKIT_TEST_REDLOCK_URLS") else {
        return;
    };
    let urls: Vec<&str> = urls.split(',').collect();
    assert_eq!(urls.len(), 5, "{urls:?}");
    for url in urls {
        let info = redis_info(url);
        assert!(info.contains("role:master"), "{url}: {info}");
        assert!(
            info.contains("connected_slaves:0"),
            "{url} is not independent: {info}"
        );
    }
}

#[test]
fn the_failover_pair_is_a_linked_primary_and_replica() {
    let Some(pair) = server_from_env("LOCKKIT_TEST_REDIS_FAILOVER") else {
        return;
    };
    let (primary, replica) = pair.split_once(',').expect("primary,replica");
    assert!(redis_info(primary).contains("role:master"));
    let info = redis_info(replica);
    assert!(info.contains("role:slave"), "{info}");
    assert!(info.contains("master_link_status:up"), "{info}");
    let primary_port = address(primary).rsplit(':').next().unwrap();
    assert!(
        info.contains(&format!("master_port:{primary_port}")),
        "{info}"
    );
}

#[test]
fn postgres_answers() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    // An SSLRequest: a PostgreSQL server answers with one byte, 'S' or 'N'.
    let ssl_request = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let mut stream = TcpStream::connect(address(&url)).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(&ssl_request).unwrap();
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).unwrap();
    assert!(
        matches!(&answer, b"S" | b"N"),
        "not a PostgreSQL server: {answer:?}"
    );
    assert!(
        url.ends_with("/lockkit"),
        "tests use the database `lockkit`: {url}"
    );
}

fn http_post(endpoint: &str, path: &str, body: &str) -> String {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        address(endpoint),
        body.len()
    );
    exchange(address(endpoint), request.as_bytes(), "\u{0}")
}

/// The value of `"field":"…"` in a JSON reply (etcd's gateway quotes 64-bit ids).
fn json_field<'a>(reply: &'a str, field: &str) -> Option<&'a str> {
    let start = reply.find(&format!("\"{field}\":\""))? + field.len() + 4;
    reply[start..].split('"').next()
}

#[test]
fn etcd_cluster_has_three_members_and_one_leader() {
    let Some(endpoints) = server_from_env("LOCKKIT_TEST_ETCD_ENDPOINTS") else {
        return;
    };
    let endpoints: Vec<&str> = endpoints.split(',').collect();
    assert_eq!(endpoints.len(), 3, "{endpoints:?}");
    let mut leaders = Vec::new();
    for endpoint in &endpoints {
        let health = exchange(
            address(endpoint),
            b"GET /health HTTP/1.1\r\nHost: etcd\r\nConnection: close\r\n\r\n",
            "\u{0}",
        );
        assert!(
            health.contains("\"health\":\"true\""),
            "{endpoint}: {health}"
        );
        let status = http_post(endpoint, "/v3/maintenance/status", "{}");
        let leader =
            json_field(&status, "leader").unwrap_or_else(|| panic!("{endpoint}: {status}"));
        leaders.push(leader.to_owned());
    }
    assert!(
        leaders
            .iter()
            .all(|leader| leader == &leaders[0] && leader != "0"),
        "members disagree on the leader: {leaders:?}"
    );
}

#[test]
fn zookeeper_ensemble_has_one_leader_and_two_followers() {
    let Some(connect) = server_from_env("LOCKKIT_TEST_ZK_CONNECT") else {
        return;
    };
    let servers: Vec<&str> = connect.split('/').next().unwrap().split(',').collect();
    assert_eq!(servers.len(), 3, "{servers:?}");
    let mut modes = Vec::new();
    for server in servers {
        assert_eq!(exchange(server, b"ruok", "imok"), "imok", "{server}");
        // ZooKeeper closes the connection after a four-letter answer.
        let stat = exchange(server, b"srvr", "\u{0}");
        let mode = stat
            .lines()
            .find_map(|line| line.strip_prefix("Mode: "))
            .unwrap_or_else(|| panic!("{server}: {stat}"));
        modes.push(mode.trim().to_owned());
    }
    modes.sort();
    assert_eq!(modes, ["follower", "follower", "leader"]);
}

/// A fault on a server that another state folder started is refused, not
/// faked: `stop`, `kill` and `pause` fail, saying this folder did not start
/// it, and the server keeps answering. (They used to exit 0 and leave it
/// serving, and a failure test then failed far from the cause.)
#[test]
fn a_fault_on_a_reused_server_is_refused_not_faked() {
    let Some(url) = server_from_env("LOCKKIT_TEST_REDIS_URL") else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services");
    let folder = std::env::temp_dir().join(format!("lockkit-reused-{}", std::process::id()));
    let run = |args: &[&str]| {
        Command::new(script)
            .args(args)
            .env("LOCKKIT_SERVICES_DIR", &folder)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("{script}: {error}"))
    };
    // Every server is up already: this folder reuses them all.
    let up = run(&["up"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    for verb in ["stop", "kill", "pause"] {
        let refused = run(&[verb, "redis"]);
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success(),
            "`{verb} redis` faked a fault: {said}"
        );
        assert!(
            said.contains("did not start it") && said.contains("127.0.0.1:6379"),
            "{said}"
        );
        assert_eq!(
            exchange(address(&url), b"PING\r\n", "\r\n"),
            "+PONG\r\n",
            "`{verb} redis` touched a server it does not own"
        );
    }
    let down = run(&["down"]);
    assert!(down.status.success());
    assert_eq!(exchange(address(&url), b"PING\r\n", "\r\n"), "+PONG\r\n");
    let _ = std::fs::remove_dir_all(&folder);
}
