//! The connection string, read as libpq reads it: the URL form
//! (`postgres://…?sslmode=verify-full`) and the keyword/value form
//! (`host=db.internal sslmode=verify-full`).
//!
//! libpq's TLS settings that tokio-postgres lacks — `sslmode=verify-ca`,
//! `verify-full` and `allow`, `sslrootcert`, `sslcert`, `sslkey` — are taken
//! out here and applied by [`tls`](crate::tls); everything else goes to the
//! driver as written, so its own errors still name what is wrong.

use lockkit_core::{Error, ErrorKind, Result};

use crate::error::BACKEND;

/// libpq's `sslmode` values, as the PostgreSQL documentation defines them
/// ("SSL Mode Descriptions", libpq-ssl.html).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    const NAMES: [(&'static str, SslMode); 6] = [
        ("disable", Self::Disable),
        ("allow", Self::Allow),
        ("prefer", Self::Prefer),
        ("require", Self::Require),
        ("verify-ca", Self::VerifyCa),
        ("verify-full", Self::VerifyFull),
    ];

    fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, mode)| *mode == self)
            .map_or("prefer", |(name, _)| name)
    }

    fn parse(value: &str) -> Result<Self> {
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == value)
            .map(|&(_, mode)| mode)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::NAMES.iter().map(|(name, _)| *name).collect();
                url_error(format!(
                    "sslmode `{value}` is not one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// The TLS settings of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) mode: SslMode,
    /// `sslrootcert`: a PEM file of trusted certificate authorities, or
    /// `system` for the platform's.
    pub(crate) root_cert: Option<String>,
    /// `sslcert` and `sslkey`: the client's certificate chain and key, PEM.
    pub(crate) client_cert: Option<String>,
    pub(crate) client_key: Option<String>,
}

/// A connection string split in two: what the driver parses, and the TLS
/// settings lockkit applies. `Debug` shows the driver's part redacted.
pub(crate) struct ConnInfo {
    pub(crate) driver: String,
    pub(crate) tls: TlsSettings,
}

impl std::fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnInfo")
            .field("driver", &lockkit_core::redact_url(&self.driver))
            .field("tls", &self.tls)
            .finish()
    }
}

/// The parameters tokio-postgres reads, besides the TLS ones lockkit takes.
const DRIVER: [&str; 18] = [
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// The schemes of the URL form; matched in any case, handed to the driver
/// in lower case.
const SCHEMES: [&str; 2] = ["postgres://", "postgresql://"];

impl ConnInfo {
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let lowered;
        let text = match url_scheme(text) {
            Some(scheme) => {
                lowered = format!("{}{}", scheme.to_ascii_lowercase(), &text[scheme.len()..]);
                check_url_shape(&lowered[scheme.len()..])?;
                lowered.as_str()
            }
            None => text,
        };
        let (prefix, segments, separator) = match url_query(text) {
            Some(query) => (&text[..query], query_segments(text, query)?, "&"),
            None => ("", keyword_segments(text), " "),
        };
        let mut tls = TlsSettings {
            mode: SslMode::Prefer,
            root_cert: None,
            client_cert: None,
            client_key: None,
        };
        let mut kept = Vec::with_capacity(segments.len());
        let mut after_secret = None;
        for segment in segments {
            let Some((key, value)) = segment.pair else {
                kept.push(&text[segment.raw]);
                continue;
            };
            check_known(&key, after_secret.as_deref(), separator)?;
            after_secret = lockkit_core::conninfo::is_secret_key(&key).then(|| key.clone());
            if key == "load_balance_hosts" && value != "disable" {
                return Err(url_error(format!(
                    "load_balance_hosts={value} would spread one client's sessions over \
                     several servers, whose locks do not exclude each other; list hosts in \
                     order for failover (with target_session_attrs=read-write) instead"
                )));
            }
            match key.as_str() {
                "sslmode" => tls.mode = SslMode::parse(&value)?,
                "sslrootcert" => tls.root_cert = Some(value),
                "sslcert" => tls.client_cert = Some(value),
                "sslkey" => tls.client_key = Some(value),
                _ => kept.push(&text[segment.raw]),
            }
        }
        let plain = matches!(
            tls.mode,
            SslMode::Disable | SslMode::Allow | SslMode::Prefer
        );
        if plain && (tls.root_cert.is_some() || tls.client_cert.is_some()) {
            return Err(url_error(format!(
                "sslrootcert, sslcert or sslkey name certificate files, but sslmode {} connects \
                 without TLS here; set sslmode=verify-full (or verify-ca, or require)",
                tls.mode.name()
            )));
        }
        if tls.client_cert.is_some() != tls.client_key.is_some() {
            return Err(url_error(
                "sslcert and sslkey go together: name both files, or neither",
            ));
        }
        let mut driver = prefix.to_owned();
        if kept.is_empty() {
            // No parameter left: no `?` either.
            driver.truncate(driver.trim_end_matches('?').len());
        }
        driver.push_str(&kept.join(separator));
        Ok(Self { driver, tls })
    }
}

/// The URL form's scheme as written, if `text` has one (in any case).
fn url_scheme(text: &str) -> Option<&str> {
    SCHEMES.iter().find_map(|scheme| {
        text.get(..scheme.len())
            .filter(|prefix| prefix.eq_ignore_ascii_case(scheme))
    })
}

/// Refuses a URL the driver would split where its user did not mean: the
/// driver ends the credentials at the first `@`, so a second `@` (in a
/// password, or in a query value when there are no credentials) would put
/// part of a password in the host or the user name, which messages print.
fn check_url_shape(after_scheme: &str) -> Result<()> {
    let ats = after_scheme.matches('@').count();
    // The one `@` belongs to a query (`?application_name=svc@web`) when
    // what precedes it holds a `?` and then a `=`, or a user name no user has.
    let misplaced = ats > 1
        || after_scheme
            .split_once('@')
            .is_some_and(|(credentials, _)| {
                let user = credentials.split(':').next().unwrap_or_default();
                let query = credentials
                    .find('?')
                    .is_some_and(|at| credentials[at..].contains('='));
                query || user.contains(['/', '?', '=', '&', '#'])
            });
    if misplaced {
        return Err(url_error(
            "an `@` other than the one before the host: percent-encode `@` inside a user \
             name, password or parameter as %40",
        ));
    }
    Ok(())
}

/// Refuses a parameter neither the driver nor lockkit reads, naming it —
/// unless it follows a secret, where it is more likely the rest of a
/// password than a parameter, and is not repeated.
fn check_known(key: &str, after_secret: Option<&str>, separator: &str) -> Result<()> {
    let ours = ["sslmode", "sslrootcert", "sslcert", "sslkey"];
    if DRIVER.contains(&key) || ours.contains(&key) {
        return Ok(());
    }
    if let Some(secret) = after_secret {
        let how = if separator == "&" {
            "percent-encode `&` in it as %26"
        } else {
            "quote a value holding spaces ('…')"
        };
        return Err(url_error(format!(
            "the parameter after `{secret}` is not one lockkit reads (not shown: it may be \
             part of the {secret}); {how}"
        )));
    }
    if lockkit_core::conninfo::LIBPQ_KEYWORDS.contains(&key) {
        return Err(url_error(format!(
            "{key} is a libpq parameter lockkit does not read; it reads {}, sslmode \
             (disable, allow, prefer, require, verify-ca, verify-full), sslrootcert, \
             sslcert and sslkey",
            DRIVER.join(", ")
        )));
    }
    Err(url_error(format!(
        "unknown parameter `{key}`; lockkit reads {}, sslmode, sslrootcert, sslcert and sslkey",
        DRIVER.join(", ")
    )))
}

/// A stretch of a connection string: a `key=value` (decoded, in `pair`)
/// or text that is not one, left for the driver to judge.
struct Segment {
    raw: std::ops::Range<usize>,
    pair: Option<(String, String)>,
}

/// Where the query of a URL-form string starts (after its `?`), split as
/// tokio-postgres splits it: the credentials end at the first `@`, the
/// query starts at the first `?` after them. `None` for the keyword form.
fn url_query(text: &str) -> Option<usize> {
    let after_scheme = SCHEMES
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix))?;
    let start = text.len() - after_scheme.len();
    let after_credentials = after_scheme.find('@').map_or(0, |at| at + 1);
    let query = after_scheme[after_credentials..]
        .find('?')
        .map_or(text.len(), |at| start + after_credentials + at + 1);
    Some(query)
}

/// The stretches of the keyword form, pairs unquoted.
fn keyword_segments(text: &str) -> Vec<Segment> {
    lockkit_core::conninfo::keyword_segments(text)
        .into_iter()
        .map(|keyword| Segment {
            raw: keyword.raw,
            pair: keyword.pair.map(|pair| (pair.key, pair.value)),
        })
        .collect()
}

/// The `&`-separated stretches of a URL's query, pairs percent-decoded.
fn query_segments(text: &str, query: usize) -> Result<Vec<Segment>> {
    let mut segments = Vec::new();
    let mut start = query;
    while start < text.len() {
        let end = text[start..].find('&').map_or(text.len(), |at| start + at);
        let pair = match text[start..end].split_once('=') {
            Some((key, value)) => {
                let key = decode(key, "a query parameter's name")?;
                let value = decode(value, &format!("the value of `{key}`"))?;
                Some((key, value))
            }
            None => None,
        };
        segments.push(Segment {
            raw: start..end,
            pair,
        });
        start = end + 1;
    }
    Ok(segments)
}

fn decode(text: &str, what: &str) -> Result<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| url_error(format!("{what} is not UTF-8 once percent-decoded")))
}

fn url_error(message: impl Into<String>) -> Error {
    Error::new(
        ErrorKind::Config,
        BACKEND,
        format!("url: {}", message.into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = std::result::Result<(), Box<dyn std::error::Error>>;

    fn split(text: &str) -> Result<(String, TlsSettings)> {
        let info = ConnInfo::parse(text)?;
        Ok((info.driver, info.tls))
    }

    #[test]
    fn url_form_gives_the_driver_everything_but_the_tls_settings() -> Outcome {
        let (driver, tls) = split(
            "postgres://app:p%40ss?w@db:5432/app?sslmode=verify-full&application_name=a&sslrootcert=%2Fca.pem",
        )?;
        assert_eq!(
            driver,
            "postgres://app:p%40ss?w@db:5432/app?application_name=a"
        );
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert.as_deref(), Some("/ca.pem"));

        let (driver, tls) = split("postgresql://db/app?application_name=a&sslmode=verify-ca")?;
        assert_eq!(driver, "postgresql://db/app?application_name=a");
        assert_eq!(tls.mode, SslMode::VerifyCa);

        let (driver, tls) =
            split("postgres://db/app?sslmode=require&sslrootcert=a&sslcert=b&sslkey=c")?;
        assert_eq!(driver, "postgres://db/app");
        assert_eq!(tls.mode, SslMode::Require);
        assert_eq!(
            (tls.root_cert, tls.client_cert, tls.client_key),
            (Some("a".into()), Some("b".into()), Some("c".into()))
        );

        let (driver, tls) = split("postgres://u:pw@db/app")?;
        assert_eq!(driver, "postgres://u:pw@db/app");
        assert_eq!(tls.mode, SslMode::Prefer);
        Ok(())
    }

    #[test]
    fn keyword_form_keeps_quoting_and_takes_the_tls_settings() -> Outcome {
        let (driver, tls) = split(
            "host=db password='a b\\'c' sslmode = verify-full sslrootcert='/my certs/ca.pem' dbname=app",
        )?;
        assert_eq!(driver, "host=db password='a b\\'c' dbname=app");
        assert!(!driver.contains("ssl"), "{driver}");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert.as_deref(), Some("/my certs/ca.pem"));
        Ok(())
    }

    #[test]
    fn bad_tls_settings_name_the_parameter() {
        for (text, names) in [
            ("postgres://db/app?sslmode=verify", "sslmode `verify`"),
            ("host=db sslmode=strict", "sslmode `strict`"),
            ("postgres://db/app?sslcrl=/crl.pem", "sslcrl"),
            ("postgres://db/app?no_such=1", "unknown parameter `no_such`"),
            ("host=db password=Ab Cd== dbname=app", "after `password`"),
            ("postgres://db/app?password=ab&cd=x", "%26"),
            ("postgres://u:p@ss/word@db/app", "%40"),
            ("host=db sslrootcert=/ca.pem", "sslmode prefer"),
            (
                "postgres://db/app?sslmode=disable&sslcert=/c&sslkey=/k",
                "sslmode disable",
            ),
            (
                "host=a,b load_balance_hosts=random",
                "load_balance_hosts=random",
            ),
            (
                "postgres://db/app?application_name=svc@web&password=s3",
                "%40",
            ),
            ("host=db sslcert=/c.pem", "sslkey"),
            ("postgres://u:p@ss@db/app", "%40"),
        ] {
            let error = ConnInfo::parse(text).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config);
            assert!(error.message().contains(names), "{text}: {error}");
        }
    }
}
