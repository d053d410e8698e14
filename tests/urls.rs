//! Every URL form the drivers accept selects its backend and connects, and
//! no password, in any form, reaches `Debug`, `Display`, an error, a log
//! line or a metric label.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockkit::{connect, redact_url, Acquire, LockConfig, Scheme};

#[test]
fn every_form_the_drivers_accept_selects_its_backend() {
    for (url, scheme) in [
        ("redis://127.0.0.1:6379", Scheme::Redis),
        ("rediss://127.0.0.1:6380", Scheme::Redis),
        ("redis+unix:///run/redis.sock", Scheme::Redis),
        ("unix:///run/redis.sock?db=1", Scheme::Redis),
        ("valkey://127.0.0.1:6379", Scheme::Redis),
        ("valkeys://127.0.0.1:6380", Scheme::Redis),
        ("valkey+unix:///run/valkey.sock", Scheme::Redis),
        ("postgres://db/app?sslmode=verify-full", Scheme::Postgres),
        ("postgresql://db/app?sslmode=verify-ca", Scheme::Postgres),
        ("host=db port=5432 dbname=app", Scheme::Postgres),
        ("  dbname = app", Scheme::Postgres),
    ] {
        assert_eq!(Scheme::of(url).unwrap(), scheme, "{url}");
    }
    for no_scheme in ["127.0.0.1:6379", "user:pa=ss@db", "=app"] {
        let error = Scheme::of(no_scheme).unwrap_err();
        assert!(error.message().contains("has no scheme"), "{error}");
    }
}

/// Redis over its Unix socket in each spelling, and Valkey's scheme over TCP.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_socket_and_valkey_forms_connect() {
    use lockkit_testkit::{server_from_env, unique_namespace};
    let (Some(tcp), Some(socket)) = (
        server_from_env("LOCKKIT_TEST_REDIS_URL"),
        server_from_env("LOCKKIT_TEST_REDIS_SOCKET"),
    ) else {
        return;
    };
    let address = tcp.strip_prefix("redis://").expect("a redis:// test URL");
    for url in [
        format!("redis+unix://{socket}"),
        format!("unix://{socket}?db=0"),
        format!("valkey+unix://{socket}"),
        format!("valkey://{address}"),
    ] {
        let locks = connect(LockConfig::new(url.as_str()).namespace(unique_namespace()))
            .await
            .unwrap_or_else(|error| panic!("{url}: {error}"));
        let lease = locks
            .acquire("socket", Acquire::ttl(Duration::from_secs(10)))
            .await
            .unwrap();
        lease.release().await.unwrap();
    }
}

/// libpq's keyword form, through `connect`.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_keyword_form_connects() {
    use lockkit_testkit::{server_from_env, unique_namespace};
    if server_from_env("LOCKKIT_TEST_POSTGRES_URL").is_none() {
        return;
    }
    let url =
        "host=127.0.0.1 port=5432 user=postgres dbname=lockkit application_name='keyword form'";
    let locks = connect(LockConfig::new(url).namespace(unique_namespace()))
        .await
        .unwrap();
    assert_eq!(locks.backend().name(), "postgres");
    let lease = locks
        .acquire("keywords", Acquire::ttl(Duration::from_secs(10)))
        .await
        .unwrap();
    lease.release().await.unwrap();
}

/// Everything a tracing subscriber is given, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every URL form with a password in it, against the test servers where it
/// names them (a refused login, a wrong user) and elsewhere (refused, no
/// such host). The marker is in every secret; no output may hold it, nor
/// the secret percent-encoded.
#[test]
fn no_password_is_ever_printed() {
    const MARKER: &str = "SeKr1t";
    let socket = std::env::var("LOCKKIT_TEST_REDIS_SOCKET")
        .unwrap_or_else(|_| "/nonexistent/redis.sock".to_owned());
    // Secrets with what URL passwords are written with, unencoded.
    let secrets = [
        format!("Ab/Cd+Ef=={MARKER}"),
        format!("pa?ss,{MARKER}#x:y"),
        format!("p@{MARKER}@z"),
        format!("{MARKER}%40x"),
        format!("p@ss/{MARKER}"),
    ];
    let mut forms: Vec<String> = Vec::new();
    for secret in &secrets {
        let encoded = percent_encode(secret);
        for form in [
            format!("postgres://app:{secret}@127.0.0.1:5432/lockkit"),
            format!("postgres://lockkit_auth:{secret}@127.0.0.1:5432/lockkit"),
            format!("postgres://lockkit_auth:{encoded}@127.0.0.1:5432/lockkit?sslmode=disable"),
            format!("postgresql://app:{secret}@127.0.0.1:5432,127.0.0.1:5433/lockkit?application_name=x"),
            format!("postgres://lockkit_auth@127.0.0.1:5432/lockkit?password={encoded}"),
            format!("postgres://app:{secret}@nowhere.invalid/lockkit?sslmode=verify-full"),
            format!("redis://:{secret}@127.0.0.1:6379"),
            format!("redis://app:{encoded}@127.0.0.1:6379/0"),
            format!("valkey://app:{secret}@127.0.0.1:6379"),
            format!("rediss://app:{secret}@127.0.0.1:6380"),
            format!("redis+unix://{socket}?user=app&pass={encoded}"),
            format!("unix://{socket}?pass={encoded}&db=0"),
            format!("valkey+unix://{socket}?pass={encoded}"),
            format!("redis://app:{secret}@nowhere.invalid:6379"),
            format!("memory://app:{secret}@x"),
            format!("consul://app:{secret}@127.0.0.1"),
            format!("app:{secret}@127.0.0.1"),
            format!("POSTGRES://app:{secret}@127.0.0.1:5432/lockkit?sslmode=require"),
            format!("redis+unix://{socket}?user=svc@corp&pass={encoded}"),
            format!("redis+unix://{socket}?p%61ss={encoded}"),
            format!("postgres://127.0.0.1:5432/lockkit?application_name=svc@web&password={encoded}"),
            format!("postgres://127.0.0.1:5432/lockkit?password={encoded}&application_name=a@b"),
            format!("postgres://app@127.0.0.1:5432/lockkit?p%61ssword={encoded}"),
            format!("redlock://u:{secret}@127.0.0.1:7001,u:{encoded}@127.0.0.1:7002"),
        ] {
            forms.push(form);
        }
    }
    // Unencoded forms a user may still write: an unquoted password with a
    // space, `://` in a keyword value, keyword text that does not parse.
    let bare = &secrets[0];
    for form in [
        format!("host=127.0.0.1 user=app password=Ab {bare} dbname=lockkit"),
        format!("host=127.0.0.1 user=app password={bare} application_name=svc://x"),
        format!("host='127.0.0.1 password={bare}"),
        format!("ssl-mode=require password={bare}"),
        format!("redlock://u:pa?ss{MARKER}@127.0.0.1:7001,127.0.0.1:7002"),
        format!("redis+unix://{socket}?user=app&pass=correct horse {MARKER}"),
        format!(
            "postgres://app@127.0.0.1:5432/lockkit?password=correct horse {MARKER}&sslmode=disable"
        ),
        format!("postgres://app@127.0.0.1:5432/lockkit?password=ab&{MARKER}=c"),
        format!("redis://app:{MARKER}"),
        format!("postgres://app:{MARKER}/lockkit"),
        format!("host=127.0.0.1 password='{MARKER}://x' dbname=lockkit"),
    ] {
        forms.push(form);
    }
    // libpq's keyword form, quoted (with the quote and backslash escaped) and bare.
    for secret in [
        format!("se cret'{MARKER}\\z"),
        format!("Ab/Cd+Ef=={MARKER}"),
    ] {
        let quoted = secret.replace('\\', "\\\\").replace('\'', "\\'");
        forms.push(format!(
            "host=127.0.0.1 port=5432 user=lockkit_auth password='{quoted}' dbname=lockkit"
        ));
        forms.push(format!(
            "host=127.0.0.1 user=app password = '{quoted}' sslmode=verify-full"
        ));
        forms.push(format!("host=127.0.0.1 password='{quoted}"));
    }
    forms.push(format!(
        "host=127.0.0.1 user=lockkit_auth password={} dbname=lockkit",
        secrets[0]
    ));

    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut shown = Vec::new();
    tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                for (form, url) in forms.iter().enumerate() {
                    let config = LockConfig::new(url.as_str());
                    shown.push((form, format!("{config:?}")));
                    shown.push((form, redact_url(url)));
                    let connected = tokio::time::timeout(Duration::from_secs(10), connect(config))
                        .await
                        .unwrap_or_else(|_| panic!("connect to {} hung", redact_url(url)));
                    match connected {
                        Err(error) => shown.push((form, format!("{error} {error:?}"))),
                        Ok(locks) => {
                            shown.push((form, format!("{locks:?}")));
                            let lease = locks
                                .acquire("secret-test", Acquire::ttl(Duration::from_secs(5)))
                                .await
                                .unwrap();
                            shown.push((form, format!("{lease:?}")));
                            lease.release().await.unwrap();
                            locks.close().await.unwrap();
                        }
                    }
                }
            })
        })
    });
    let labels: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, ..)| format!("{key:?}"))
        .collect();
    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let encoded_marker = percent_encode(MARKER);
    let leaks = |text: &str| text.contains(MARKER) || text.contains(&encoded_marker);
    for (form, text) in &shown {
        assert!(
            !leaks(text),
            "a password from `{}` was printed: {text}",
            redact_url(&forms[*form])
        );
    }
    for text in labels.iter().chain([&logs]) {
        assert!(
            !leaks(text),
            "a password reached the logs or metrics: {text}"
        );
    }
    assert!(shown.len() >= forms.len() * 3, "every form was tried");
}

/// Percent-encodes everything but unreserved characters, as a careful
/// user would write a password into a URL.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// A password written into the wrong field of a configuration is not
/// repeated by the error that refuses it (TOML's excerpt of the line, or
/// serde's quote of the value).
#[test]
fn config_errors_never_print_a_password() {
    const SECRET: &str = "horseSecret";
    let url = format!("redis://:{SECRET}@127.0.0.1:6379");
    let tomls = [
        format!("url = \"memory://\"\n[redis]\nurl = \"{url}\"\n"),
        format!("url = \"memory://\"\n[postgres]\npassword = \"{SECRET}\"\n"),
        format!("url = [\"{url}\"]\n"),
        format!("url = \"memory://\"\nrequire = \"{url}\"\n"),
        format!("url = \"memory://\"\ndefault_ttl = \"{url}\"\n"),
        format!("url = \"memory://\"\nredis = \"{url}\"\n"),
        format!("url = \"{url}\"\nnamespace = 7\n"),
    ];
    for text in &tomls {
        let error = LockConfig::from_toml(text).unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(SECRET), "{shown}");
    }
    let jsons = [
        format!("{{\"url\":\"memory://\",\"redis\":\"{url}\"}}"),
        format!("{{\"url\":\"memory://\",\"require\":\"{url}\"}}"),
        format!("{{\"url\":\"{url}\"}} trailing"),
    ];
    for text in &jsons {
        let error = LockConfig::from_json(text).unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(SECRET), "{shown}");
    }
    let vars = |name: &str| match name {
        "LOCKKIT_URL" => Some("memory://".to_owned()),
        "LOCKKIT_REQUIRE" | "LOCKKIT_DEFAULT_TTL" | "LOCKKIT_REDIS_MIN_REPLICAS" => {
            Some(url.clone())
        }
        _ => None,
    };
    let error = LockConfig::from_vars(vars).unwrap_err();
    assert!(!format!("{error} {error:?}").contains(SECRET), "{error:?}");
}

/// URL parts the Redis driver would silently ignore, and `#insecure`, are
/// refused naming the part, before any connection.
#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_url_parts_the_driver_would_ignore_are_refused() {
    for (url, names) in [
        (
            "redis+unix://app:pw@localhost/run/redis.sock",
            "?user=…&pass=…",
        ),
        (
            "unix:///run/redis.sock?username=app&password=pw",
            "`username`",
        ),
        ("redis://127.0.0.1:6379/?db=3", "in the path"),
        ("redis://127.0.0.1:6379/?timeout=5", "`timeout`"),
        ("unix:///run/redis.sock?pass=ab&cd=x", "%26"),
        ("rediss://127.0.0.1:6380/#insecure", "#insecure"),
        ("valkeys://127.0.0.1:6380/#insecure", "#insecure"),
    ] {
        let error = connect(url).await.unwrap_err();
        assert_eq!(error.kind(), lockkit::ErrorKind::Config, "{url}: {error}");
        assert!(error.message().contains(names), "{url}: {error}");
        assert!(!error.message().contains("pw"), "{url}: {error}");
    }
}
