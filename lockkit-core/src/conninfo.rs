//! Connection strings: libpq's keyword form read once for every crate, and
//! passwords kept out of everything lockkit prints.

use std::ops::Range;

/// A stretch of a keyword-form connection string (`host=db password='a b'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyword {
    /// The bytes the stretch takes up, without the whitespace around it.
    pub raw: Range<usize>,
    /// The pair, or `None` for text that does not parse as one (then the
    /// stretch runs to the end: the driver's own error says what is wrong).
    pub pair: Option<KeywordPair>,
}

/// One `key = value` of the keyword form.
#[derive(Clone, PartialEq, Eq)]
pub struct KeywordPair {
    /// The keyword, as written.
    pub key: String,
    /// The value, unquoted and unescaped.
    pub value: String,
    /// The bytes of the value as written, quotes included.
    pub value_raw: Range<usize>,
}

impl std::fmt::Debug for KeywordPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if is_secret_key(&self.key) {
            "***"
        } else {
            &self.value
        };
        f.debug_struct("KeywordPair")
            .field("key", &self.key)
            .field("value", &value)
            .field("value_raw", &self.value_raw)
            .finish()
    }
}

/// The stretches of libpq's keyword form, with its quoting: `'…'` takes
/// whitespace, and `\` escapes the next character (as tokio-postgres and
/// libpq read it).
pub fn keyword_segments(text: &str) -> Vec<Keyword> {
    let mut segments = Vec::new();
    let mut chars = text.char_indices().peekable();
    let skip_whitespace = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    };
    loop {
        skip_whitespace(&mut chars);
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        skip_whitespace(&mut chars);
        let has_equals = chars.next_if(|(_, c)| *c == '=').is_some();
        skip_whitespace(&mut chars);
        let value_start = chars.peek().map_or(text.len(), |&(at, _)| at);
        let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
        let mut value = String::new();
        let mut closed = !quoted;
        let mut end = text.len();
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '\'' if quoted => {
                    closed = true;
                    end = at + 1;
                    break;
                }
                c if c.is_whitespace() && !quoted => {
                    end = at;
                    break;
                }
                c => value.push(c),
            }
        }
        if !has_equals || !closed {
            segments.push(Keyword {
                raw: start..text.len(),
                pair: None,
            });
            break;
        }
        segments.push(Keyword {
            raw: start..end,
            pair: Some(KeywordPair {
                key,
                value,
                value_raw: value_start..end,
            }),
        });
    }
    segments
}

/// Every keyword libpq reads (PostgreSQL 17, "Parameter Key Words"), and
/// tokio-postgres' `keepalives_retries`.
pub const LIBPQ_KEYWORDS: [&str; 45] = [
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "require_auth",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "keepalives_retries",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "sslnegotiation",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
    "scram_client_key",
    "scram_server_key",
    "oauth_client_secret",
];

/// Schemes whose URLs list several hosts, each with credentials of its own
/// (`redlock://u:p@h1:7001,u:p@h2:7002`): there a `,` ends a password too,
/// so it must be percent-encoded inside one.
const PER_HOST_CREDENTIALS: [&str; 3] = ["redlock", "etcd", "zk"];

/// `url` with every password replaced by `***`, in every form lockkit's
/// drivers accept:
///
/// - `scheme://user:password@host…`: everything between the user's `:` and
///   the **last** `@` is hidden, so a password holding `/`, `?`, `,`, `#`
///   or `@` unencoded is hidden whole (an `@` later in the query hides more
///   than the password, never less). For `redlock://`, `etcd://` and
///   `zk://`, each comma-separated host's credentials are hidden (there a
///   `,` in a password must be percent-encoded).
/// - every `key=value` — after `?`, `&` or whitespace, wherever it is —
///   whose key, percent-decoded, mentions a password, secret or token
///   (`password`, `pass` of `redis+unix://…?pass=`, `sslpassword`,
///   `token`): its value, up to the next `&` or whitespace.
/// - libpq's keyword form (`host=db password='a b'`): the values as above,
///   quoted values whole; after a secret, any word that is no libpq keyword
///   (the rest of an unquoted password with a space); text after a keyword
///   that does not parse.
/// - text that is neither: everything after its first word.
pub fn redact_url(url: &str) -> String {
    if is_keyword_form(url) {
        return hide_secret_parameters(&redact_keywords(url), true);
    }
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = if PER_HOST_CREDENTIALS.contains(&scheme.to_ascii_lowercase().as_str()) {
                hide_per_host(rest)
            } else {
                hide_credentials(rest)
            };
            hide_secret_parameters(&format!("{scheme}://{rest}"), false)
        }
        None => {
            let hidden = match url.split_once(char::is_whitespace) {
                Some((first, _)) => format!("{} ***", hide_credentials(first)),
                None => hide_credentials(url),
            };
            hide_secret_parameters(&hidden, true)
        }
    }
}

/// Whether `text` reads as libpq's keyword form: it starts `keyword =`.
/// (`user:pa=ss@host` does not: its first word is no keyword.)
pub fn is_keyword_form(text: &str) -> bool {
    keyword_segments(text).first().is_some_and(|segment| {
        segment.pair.as_ref().is_some_and(|pair| {
            !pair.key.is_empty()
                && pair
                    .key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    })
}

/// Whether a parameter named `key` (percent-encoded or not) holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = percent_encoding::percent_decode_str(key)
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    ["pass", "secret", "token"]
        .iter()
        .any(|secret| key.contains(secret))
}

/// `user:password@rest` → `user:***@rest`, the credentials ending at the
/// last `@`; text without both stays.
fn hide_credentials(text: &str) -> String {
    match text.rsplit_once('@') {
        Some((credentials, rest)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{user}:***@{rest}"),
            None => text.to_owned(),
        },
        // `user:password` with no host after it: a "port" that is no number.
        None => {
            let end = text.find(['/', '?']).unwrap_or(text.len());
            match text[..end].rsplit_once(':') {
                Some((user, port))
                    if !port.is_empty()
                        && !port.ends_with(']')
                        && !port.chars().all(|c| c.is_ascii_digit()) =>
                {
                    format!("{user}:***{}", &text[end..])
                }
                _ => text.to_owned(),
            }
        }
    }
}

/// Each comma-separated host's credentials hidden. A piece that is neither
/// `user…@host` nor `host[:port]` is taken for part of a password holding
/// an unencoded `,`, and hidden with the credentials that follow it.
fn hide_per_host(rest: &str) -> String {
    let looks_like_host = |piece: &str| {
        let address = piece.split(['/', '?']).next().unwrap_or_default();
        match address.rsplit_once(':') {
            Some((_, port)) => !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()),
            None => true,
        }
    };
    let mut hosts = Vec::new();
    let mut pending: Vec<&str> = Vec::new();
    for piece in rest.split(',') {
        pending.push(piece);
        if piece.contains('@') || looks_like_host(piece) {
            hosts.push(hide_credentials(&pending.join(",")));
            pending.clear();
        }
    }
    if !pending.is_empty() {
        hosts.push(pending.join(","));
    }
    hosts.join(",")
}

/// Query keys the drivers read besides libpq's keywords (Redis:
/// `db`, `user`, `pass`, `protocol`).
const QUERY_KEYS: [&str; 4] = ["db", "user", "pass", "protocol"];

/// Hides the value of every secret `key=value` that starts the text or
/// follows `?`, `&` (or, in `words`, whitespace). In a URL (`words` false)
/// a value runs to the next `&`, spaces included, and a parameter after a
/// secret whose key no driver reads is taken for the rest of the secret
/// (an unencoded `&`) and hidden too.
fn hide_secret_parameters(text: &str, words: bool) -> String {
    let is_end = |c: char| c == '&' || (words && c.is_whitespace());
    let is_boundary = |c: char| c == '?' || c == '&' || c.is_whitespace();
    let mut hidden = String::with_capacity(text.len());
    let mut rest = text;
    let mut at_boundary = true;
    let mut after_secret = false;
    while let Some(c) = rest.chars().next() {
        if at_boundary {
            if let Some((key, after)) = rest.split_once('=') {
                let plain_key = !key.is_empty() && !key.contains(is_boundary);
                let known = {
                    let key = key.to_ascii_lowercase();
                    LIBPQ_KEYWORDS.contains(&key.as_str()) || QUERY_KEYS.contains(&key.as_str())
                };
                let secret = plain_key && is_secret_key(key);
                if secret || (plain_key && after_secret && !known && !words) {
                    let value_end = after.find(is_end).unwrap_or(after.len());
                    hidden.push_str(if secret { key } else { "***" });
                    hidden.push_str("=***");
                    rest = &after[value_end..];
                    at_boundary = false;
                    after_secret = true;
                    continue;
                }
                if plain_key {
                    after_secret = false;
                }
            }
        }
        hidden.push(c);
        at_boundary = is_boundary(c) && (words || !c.is_whitespace());
        rest = &rest[c.len_utf8()..];
    }
    hidden
}

fn redact_keywords(text: &str) -> String {
    let mut redacted = String::with_capacity(text.len());
    let mut copied = 0;
    let mut after_secret = false;
    for segment in keyword_segments(text) {
        let hidden = match &segment.pair {
            Some(pair) if is_secret_key(&pair.key) => {
                after_secret = true;
                pair.value_raw.clone()
            }
            Some(pair) if LIBPQ_KEYWORDS.contains(&pair.key.as_str()) => {
                after_secret = false;
                continue;
            }
            // After a secret, a word that is no keyword may be the rest of
            // an unquoted password with a space in it.
            Some(_) if after_secret => segment.raw.clone(),
            Some(_) => continue,
            // Unparsed text may hold a password whose quoting broke.
            None => segment.raw.clone(),
        };
        redacted.push_str(&text[copied..hidden.start]);
        redacted.push_str("***");
        copied = hidden.end;
    }
    redacted.push_str(&text[copied..]);
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_values_are_unquoted_and_spans_point_at_them() -> Result<(), &'static str> {
        let text = "host=db password = 'a b\\'c' dbname=x";
        let segments = keyword_segments(text);
        let pairs: Vec<(&str, &str, &str)> = segments
            .iter()
            .map(|segment| {
                let pair = segment.pair.as_ref()?;
                Some((
                    pair.key.as_str(),
                    pair.value.as_str(),
                    &text[pair.value_raw.clone()],
                ))
            })
            .collect::<Option<_>>()
            .ok_or("a segment without a key = value pair")?;
        assert_eq!(
            pairs,
            [
                ("host", "db", "db"),
                ("password", "a b'c", "'a b\\'c'"),
                ("dbname", "x", "x"),
            ]
        );
        let broken = keyword_segments("host=db password='open");
        assert_eq!(broken.len(), 2);
        assert_eq!(broken[1].pair, None);
        Ok(())
    }

    #[test]
    fn each_form_keeps_what_is_not_secret() {
        for (url, shown) in [
            (
                "postgres://app:Ab/Cd+Ef==@h/app?sslmode=require",
                "postgres://app:***@h/app?sslmode=require",
            ),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "redis+unix:///run/redis.sock?user=u&pass=pw&db=1",
                "redis+unix:///run/redis.sock?user=u&pass=***&db=1",
            ),
            (
                "host=db user=app password='p w' sslpassword=k dbname=app",
                "host=db user=app password=*** sslpassword=*** dbname=app",
            ),
            ("host=db password='open", "host=db ***"),
            ("u:x+y==@h", "u:***@h"),
            (
                "host=db password=Ab Cd== dbname=app",
                "host=db password=*** *** dbname=app",
            ),
            (
                "redis+unix:///run/redis.sock?user=svc@corp&pass=s3",
                "redis+unix:///run/redis.sock?user=svc@corp&pass=***",
            ),
            (
                "postgres://db/app?application_name=svc@web&password=s3",
                "postgres://db/app?application_name=svc@web&password=***",
            ),
            (
                "postgres://app@db/app?p%61ssword=s3",
                "postgres://app@db/app?p%61ssword=***",
            ),
            (
                "host=db password=s3 application_name=svc://x",
                "host=db password=*** application_name=svc://x",
            ),
            ("host='db password=s3", "host='db ***"),
            ("ssl-mode=require password=s3", "ssl-mode=require ***"),
            (
                "redlock://u:pa?ss@h1,u:p2@h2",
                "redlock://u:***@h1,u:***@h2",
            ),
            (
                "redlock://u:p1@h1:7001,h2:7002,u:p3@h3:7003",
                "redlock://u:***@h1:7001,h2:7002,u:***@h3:7003",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
