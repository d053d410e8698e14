//! LockConfig: parsed from TOML, JSON and the environment; every refusal names its field.

use std::collections::HashMap;
use std::time::Duration;

use lockkit::{redact_url, ErrorKind, LockConfig, SafetyClass};

#[test]
fn toml_with_every_field_parses() {
    let config = LockConfig::from_toml(
        r#"
        url = "memory://"
        namespace = "billing"
        require = "correctness"
        default_ttl = "1m 30s"
        "#,
    )
    .unwrap();
    assert_eq!(config.url, "memory://");
    assert_eq!(config.namespace, "billing");
    assert_eq!(config.require, Some(SafetyClass::Correctness));
    assert_eq!(config.default_ttl, Duration::from_secs(90));
}

#[test]
fn omitted_fields_take_their_defaults() {
    let config = LockConfig::from_json(r#"{"url": "memory://"}"#).unwrap();
    assert_eq!(config, LockConfig::new("memory://"));
    assert_eq!(config.namespace, "lockkit");
    assert_eq!(config.require, None);
    assert_eq!(config.default_ttl, Duration::from_secs(30));
}

fn refusal(result: lockkit::Result<LockConfig>) -> String {
    let error = result.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    error.message().to_owned()
}

#[test]
fn unknown_fields_are_refused_by_name() {
    let message = refusal(LockConfig::from_toml(
        "url = \"memory://\"\nnamespase = \"x\"\n",
    ));
    assert!(message.contains("namespase"), "{message}");
    let message = refusal(LockConfig::from_json(
        r#"{"url": "memory://", "ttl": "5s"}"#,
    ));
    assert!(message.contains("`ttl`"), "{message}");
}

#[test]
fn bad_durations_are_refused_naming_the_field() {
    for (text, why) in [
        (r#"default_ttl = "-5s""#, "negative"),
        (r#"default_ttl = "soon""#, "not a duration"),
        ("default_ttl = 30", "with its unit"),
    ] {
        let message = refusal(LockConfig::from_toml(&format!(
            "url = \"memory://\"\n{text}\n"
        )));
        assert!(message.contains("default_ttl"), "{message}");
        assert!(message.contains(why), "{message}");
    }
    let message = refusal(LockConfig::from_json(
        r#"{"url": "memory://", "default_ttl": "-1ms"}"#,
    ));
    assert!(
        message.contains("`default_ttl`") && message.contains("negative"),
        "{message}"
    );
}

#[test]
fn a_bad_require_is_refused_naming_the_field() {
    let message = refusal(LockConfig::from_toml(
        "url = \"memory://\"\nrequire = \"strong\"\n",
    ));
    assert!(
        message.contains("require") && message.contains("`strong`"),
        "{message}"
    );
}

#[test]
fn a_missing_url_is_refused_by_name() {
    let message = refusal(LockConfig::from_json(r#"{"namespace": "x"}"#));
    assert!(message.contains("url"), "{message}");
    let message = refusal(LockConfig::from_json("{\"url\": \"memory://\"} trailing"));
    assert!(message.contains("JSON"), "{message}");
}

#[test]
fn the_environment_provides_a_config() {
    let vars: HashMap<&str, &str> = [
        ("LOCKKIT_URL", "memory://"),
        ("LOCKKIT_NAMESPACE", "jobs"),
        ("LOCKKIT_REQUIRE", "efficiency"),
        ("LOCKKIT_DEFAULT_TTL", "250ms"),
    ]
    .into();
    let config = LockConfig::from_vars(|name| vars.get(name).map(|v| v.to_string())).unwrap();
    assert_eq!(config.namespace, "jobs");
    assert_eq!(config.require, Some(SafetyClass::Efficiency));
    assert_eq!(config.default_ttl, Duration::from_millis(250));

    let message = refusal(LockConfig::from_vars(|_| None));
    assert!(message.contains("LOCKKIT_URL"), "{message}");
    let message = refusal(LockConfig::from_vars(|name| match name {
        "LOCKKIT_URL" => Some("memory://".into()),
        "LOCKKIT_DEFAULT_TTL" => Some("-3s".into()),
        _ => None,
    }));
    assert!(message.contains("LOCKKIT_DEFAULT_TTL"), "{message}");
    let message = refusal(LockConfig::from_vars(|name| match name {
        "LOCKKIT_URL" => Some("memory://".into()),
        "LOCKKIT_REQUIRE" => Some("maybe".into()),
        _ => None,
    }));
    assert!(message.contains("LOCKKIT_REQUIRE"), "{message}");
}

#[test]
fn debug_never_prints_a_password() {
    let secrets = [
        "redis://:hunter2@127.0.0.1:6379/0",
        "postgres://app:hunter2@db.internal:5432/locks?sslmode=require",
        "redlock://u:hunter2@h1:7001,u:hunter2@h2:7002,h3:7003",
        "etcd://h1:2379?password=hunter2&timeout=5s",
        "rediss://user:p%40ss:hunter2@h:6380",
    ];
    for url in secrets {
        let shown = format!("{:?}", LockConfig::new(url));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }
    assert_eq!(
        redact_url("postgres://app:pw@db:5432/locks?sslmode=require"),
        "postgres://app:***@db:5432/locks?sslmode=require"
    );
    assert_eq!(
        redact_url("redis://127.0.0.1:6379"),
        "redis://127.0.0.1:6379"
    );
}

#[cfg(feature = "redis")]
#[test]
fn the_redis_section_parses_and_refuses_by_name() {
    let config = LockConfig::from_toml(
        r#"
        url = "redis://127.0.0.1:6379"
        [redis]
        min_replicas = 1
        replica_timeout = "50ms"
        response_timeout = "1s"
        "#,
    )
    .unwrap();
    assert_eq!(config.redis.min_replicas, 1);
    assert_eq!(config.redis.replica_timeout, Duration::from_millis(50));
    assert_eq!(config.redis.response_timeout, Duration::from_secs(1));
    // Unset: the backend's default.
    assert_eq!(
        config.redis.connect_timeout,
        lockkit::RedisConfig::default().connect_timeout
    );

    let message = refusal(LockConfig::from_toml(
        "url = \"redis://h\"\n[redis]\nmin_replica = 1\n",
    ));
    assert!(message.contains("min_replica"), "{message}");
    let message = refusal(LockConfig::from_toml(
        "url = \"redis://h\"\n[redis]\nreplica_timeout = \"soon\"\n",
    ));
    assert!(message.contains("redis.replica_timeout"), "{message}");

    let vars: HashMap<&str, &str> = [
        ("LOCKKIT_URL", "redis://h"),
        ("LOCKKIT_REDIS_MIN_REPLICAS", "2"),
        ("LOCKKIT_REDIS_CONNECT_TIMEOUT", "3s"),
    ]
    .into();
    let config = LockConfig::from_vars(|name| vars.get(name).map(|v| v.to_string())).unwrap();
    assert_eq!(config.redis.min_replicas, 2);
    assert_eq!(config.redis.connect_timeout, Duration::from_secs(3));
    let message = refusal(LockConfig::from_vars(|name| match name {
        "LOCKKIT_URL" => Some("redis://h".into()),
        "LOCKKIT_REDIS_MIN_REPLICAS" => Some("some".into()),
        _ => None,
    }));
    assert!(message.contains("LOCKKIT_REDIS_MIN_REPLICAS"), "{message}");
}

#[cfg(feature = "postgres")]
#[test]
fn the_postgres_section_parses_and_refuses_by_name() {
    let config = LockConfig::from_toml(
        r#"
        url = "postgres://app@db/app"
        [postgres]
        sessions = 3
        max_waiters = 32
        schema = "locks"
        connect_timeout = "2s"
        "#,
    )
    .unwrap();
    assert_eq!(config.postgres.sessions, 3);
    assert_eq!(config.postgres.max_waiters, 32);
    // Unset: the backend's default.
    assert_eq!(
        config.postgres.max_transactions,
        lockkit::PostgresConfig::default().max_transactions
    );
    assert_eq!(config.postgres.schema, "locks");
    assert_eq!(config.postgres.connect_timeout, Duration::from_secs(2));

    let message = refusal(LockConfig::from_toml(
        "url = \"postgres://h\"\n[postgres]\nsession = 1\n",
    ));
    assert!(message.contains("session"), "{message}");
    let message = refusal(LockConfig::from_toml(
        "url = \"postgres://h\"\n[postgres]\nsessions = -1\n",
    ));
    assert!(message.contains("postgres.sessions"), "{message}");

    let vars: HashMap<&str, &str> = [
        ("LOCKKIT_URL", "postgres://h"),
        ("LOCKKIT_POSTGRES_SESSIONS", "1"),
        ("LOCKKIT_POSTGRES_MAX_TRANSACTIONS", "4"),
        ("LOCKKIT_POSTGRES_SCHEMA", "locks"),
        ("LOCKKIT_POSTGRES_CONNECT_TIMEOUT", "750ms"),
    ]
    .into();
    let config = LockConfig::from_vars(|name| vars.get(name).map(|v| v.to_string())).unwrap();
    assert_eq!(config.postgres.sessions, 1);
    assert_eq!(config.postgres.max_transactions, 4);
    assert_eq!(config.postgres.schema, "locks");
    assert_eq!(config.postgres.connect_timeout, Duration::from_millis(750));
    let message = refusal(LockConfig::from_vars(|name| match name {
        "LOCKKIT_URL" => Some("postgres://h".into()),
        "LOCKKIT_POSTGRES_MAX_WAITERS" => Some("many".into()),
        _ => None,
    }));
    assert!(
        message.contains("LOCKKIT_POSTGRES_MAX_WAITERS"),
        "{message}"
    );
}

/// A section of a backend this build does not include is accepted and kept
/// as written (one file serves builds with different features); `Debug`
/// shows its keys, never its values; an unknown section is still refused.
#[cfg(not(feature = "redlock"))]
#[test]
fn a_section_of_a_backend_not_built_in_is_kept_raw() {
    let config = LockConfig::from_toml(
        r#"
        url = "memory://"
        [redlock]
        retry_delay = "6ms"
        password = "hunter2"
        "#,
    )
    .unwrap();
    let redlock = config
        .redlock
        .as_ref()
        .expect("the [redlock] section is kept");
    assert_eq!(
        redlock
            .table()
            .get("retry_delay")
            .and_then(|value| value.as_str()),
        Some("6ms")
    );
    let shown = format!("{config:?}");
    assert!(shown.contains("retry_delay"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");

    let message = refusal(LockConfig::from_toml(
        "url = \"memory://\"\n[consul]\naddress = \"h\"\n",
    ));
    assert!(message.contains("consul"), "{message}");
}

#[cfg(feature = "etcd")]
#[test]
fn the_etcd_section_parses_and_refuses_by_name() {
    let config = LockConfig::from_toml(
        r#"
        url = "etcd://h1:2379,h2:2379"
        [etcd]
        session_ttl = "15s"
        response_timeout = "2s"
        "#,
    )
    .unwrap();
    assert_eq!(config.etcd.session_ttl, Duration::from_secs(15));
    assert_eq!(config.etcd.response_timeout, Duration::from_secs(2));
    assert_eq!(config.etcd.connect_timeout, Duration::from_secs(5));
    let message = refusal(LockConfig::from_toml(
        "url = \"etcd://h\"\n[etcd]\nlease_ttl = \"10s\"\n",
    ));
    assert!(message.contains("lease_ttl"), "{message}");
    let config = LockConfig::from_vars(|name| match name {
        "LOCKKIT_URL" => Some("etcd://h".into()),
        "LOCKKIT_ETCD_SESSION_TTL" => Some("20s".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(config.etcd.session_ttl, Duration::from_secs(20));
}

#[cfg(feature = "redlock")]
#[test]
fn the_redlock_section_parses_and_refuses_by_name() {
    let config = LockConfig::from_toml(
        r#"
        url = "redlock://h1:7001,h2:7002,h3:7003"
        [redlock]
        node_timeout = "20ms"
        drift_factor = 0.02
        "#,
    )
    .unwrap();
    assert_eq!(config.redlock.node_timeout, Duration::from_millis(20));
    assert_eq!(config.redlock.drift_factor, 0.02);
    assert_eq!(config.redlock.retry_jitter, Duration::from_millis(2));
    let message = refusal(LockConfig::from_toml(
        "url = \"redlock://h\"\n[redlock]\nretry_delay = \"10ms\"\n",
    ));
    assert!(message.contains("retry_delay"), "{message}");
    let config = LockConfig::from_vars(|name| match name {
        "LOCKKIT_URL" => Some("redlock://h1,h2,h3".into()),
        "LOCKKIT_REDLOCK_NODE_TIMEOUT" => Some("30ms".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(config.redlock.node_timeout, Duration::from_millis(30));
}

#[cfg(feature = "zk")]
#[test]
fn the_zk_section_parses_and_refuses_by_name() {
    let config = LockConfig::from_toml(
        r#"
        url = "zk://h1:2181,h2:2181/locks"
        [zk]
        session_timeout = "15s"
        connect_timeout = "2s"
        "#,
    )
    .unwrap();
    assert_eq!(config.zk.session_timeout, Duration::from_secs(15));
    assert_eq!(config.zk.connect_timeout, Duration::from_secs(2));
    assert_eq!(config.zk.response_timeout, Duration::from_secs(5));
    let message = refusal(LockConfig::from_toml(
        "url = \"zk://h\"\n[zk]\nsession_ttl = \"10s\"\n",
    ));
    assert!(message.contains("session_ttl"), "{message}");
    let config = LockConfig::from_vars(|name| match name {
        "LOCKKIT_URL" => Some("zk://h".into()),
        "LOCKKIT_ZK_SESSION_TIMEOUT" => Some("20s".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(config.zk.session_timeout, Duration::from_secs(20));
}

/// A variable goes through the section's own deserializer: a value TOML
/// would refuse is refused the same way, naming the variable.
#[cfg(feature = "postgres")]
#[test]
fn variables_are_checked_as_toml_is() {
    let from_toml = refusal(LockConfig::from_toml(
        "url = \"postgres://h\"\n[postgres]\nresponse_timeout = \"soon\"\n",
    ));
    let from_env = refusal(LockConfig::from_vars(|name| match name {
        "LOCKKIT_URL" => Some("postgres://h".into()),
        "LOCKKIT_POSTGRES_RESPONSE_TIMEOUT" => Some("soon".into()),
        _ => None,
    }));
    assert!(
        from_env.contains("LOCKKIT_POSTGRES_RESPONSE_TIMEOUT"),
        "{from_env}"
    );
    let why = "is not a duration";
    assert!(
        from_toml.contains(why) && from_env.contains(why),
        "{from_toml} / {from_env}"
    );
}

/// A password holding a `"` is hidden whole in a type refusal: serde quotes
/// the value escaped (`\"`), and the quote inside does not end it.
#[cfg(feature = "redis")]
#[test]
fn a_password_with_a_quote_is_hidden_in_refusals() {
    let toml = refusal(LockConfig::from_toml(
        "url = \"memory://\"\n[redis]\nmin_replicas = \"redis://u:ab\\\"s3cr3tpw@h\"\n",
    ));
    let json = refusal(LockConfig::from_json(
        r#"{"url": "memory://", "redis": {"min_replicas": "redis://u:ab\"s3cr3tpw@h"}}"#,
    ));
    for message in [toml, json] {
        assert!(!message.contains("s3cr3tpw"), "{message}");
        assert!(message.contains("redis.min_replicas"), "{message}");
        assert!(message.contains("expected u32"), "{message}");
    }
}
