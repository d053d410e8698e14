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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordPair {
    /// The keyword, as written.
    pub key: String,
    /// The value, unquoted and unescaped.
    pub value: String,
    /// The bytes of the value as written, quotes included.
    pub value_raw: Range<usize>,
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
///   `zk://`, each comma-separated host's credentials are hidden.
/// - query parameters and libpq keywords whose name mentions a password,
///   secret or token (`password`, `pass` of `redis+unix://…?pass=`,
///   `sslpassword`, `token`): their values.
/// - libpq's keyword form (`host=db password='a b'`): the values as above;
///   text after a keyword that does not parse is hidden whole.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = if PER_HOST_CREDENTIALS.contains(&scheme.to_ascii_lowercase().as_str()) {
                redact_per_host(rest)
            } else {
                redact_authority(rest)
            };
            format!("{scheme}://{rest}")
        }
        None if is_keyword_form(url) => redact_keywords(url),
        None => redact_authority(url),
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

/// One set of credentials, ending at the last `@`; then the query.
fn redact_authority(rest: &str) -> String {
    let (credentials, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let mut redacted = String::with_capacity(rest.len());
    if let Some(credentials) = credentials {
        redacted.push_str(&hide_password(credentials));
        redacted.push('@');
    }
    redacted.push_str(&redact_query(after));
    redacted
}

/// `user:password` → `user:***`; a lone user stays.
fn hide_password(credentials: &str) -> String {
    match credentials.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => credentials.to_owned(),
    }
}

fn redact_per_host(rest: &str) -> String {
    let (location, query) = match rest.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (rest, None),
    };
    let hosts: Vec<String> = location
        .split(',')
        .map(|host| match host.rsplit_once('@') {
            Some((credentials, address)) => format!("{}@{address}", hide_password(credentials)),
            None => host.to_owned(),
        })
        .collect();
    let mut redacted = hosts.join(",");
    if let Some(query) = query {
        redacted.push('?');
        redacted.push_str(&redact_pairs(query));
    }
    redacted
}

/// The values of secret parameters in the query of `location?query`.
fn redact_query(location: &str) -> String {
    match location.split_once('?') {
        Some((path, query)) => format!("{path}?{}", redact_pairs(query)),
        None => location.to_owned(),
    }
}

fn redact_pairs(query: &str) -> String {
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_key(key) => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    pairs.join("&")
}

fn redact_keywords(text: &str) -> String {
    let mut redacted = String::with_capacity(text.len());
    let mut copied = 0;
    for segment in keyword_segments(text) {
        let hidden = match &segment.pair {
            Some(pair) if is_secret_key(&pair.key) => pair.value_raw.clone(),
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

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "secret", "token"]
        .iter()
        .any(|secret| key.contains(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_values_are_unquoted_and_spans_point_at_them() {
        let text = "host=db password = 'a b\\'c' dbname=x";
        let segments = keyword_segments(text);
        let pairs: Vec<(&str, &str, &str)> = segments
            .iter()
            .map(|segment| {
                let pair = segment.pair.as_ref().unwrap();
                (
                    pair.key.as_str(),
                    pair.value.as_str(),
                    &text[pair.value_raw.clone()],
                )
            })
            .collect();
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
                "redlock://u:p1@h1:7001,h2:7002,u:p3@h3:7003",
                "redlock://u:***@h1:7001,h2:7002,u:***@h3:7003",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
