//! TLS for `sslmode=require`: rustls, certificates checked against the
//! platform's roots.
//!
//! `sslmode=prefer` (the driver's default) connects without TLS: a
//! connection that falls back to plain text on any error protects nothing,
//! and lockkit would rather say so than pretend. Ask for TLS with
//! `sslmode=require`; then a certificate the platform does not trust fails
//! the connection (stricter than libpq's `require`, which checks nothing).

use lockkit_core::{Error, ErrorKind, Result};
use tokio_postgres::config::SslMode;
use tokio_postgres::Config;

use crate::error::BACKEND;
use crate::session::Tls;

/// The connector for `config`'s sslmode; `prefer` becomes `disable`.
pub(crate) fn connector(config: &mut Config, server: &str) -> Result<Tls> {
    let require = match config.get_ssl_mode() {
        SslMode::Require => true,
        _ => {
            config.ssl_mode(SslMode::Disable);
            false
        }
    };
    build(require, server)
}

#[cfg(feature = "tls")]
fn build(require: bool, server: &str) -> Result<Tls> {
    use std::sync::Arc;

    let mut roots = rustls::RootCertStore::empty();
    if require {
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                BACKEND,
                format!("{server}: sslmode=require, but no trusted root certificates were found on this machine"),
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| {
            Error::new(
                ErrorKind::Config,
                BACKEND,
                format!("{server}: TLS setup: {error}"),
            )
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[cfg(not(feature = "tls"))]
fn build(require: bool, server: &str) -> Result<Tls> {
    if require {
        return Err(Error::new(
            ErrorKind::Config,
            BACKEND,
            format!("{server}: sslmode=require needs feature `tls` of lockkit-postgres"),
        ));
    }
    Ok(tokio_postgres::NoTls)
}
