//! TLS by rustls, for the `sslmode`s libpq users write.
//!
//! | `sslmode` | lockkit connects | certificate checked |
//! |---|---|---|
//! | `disable`, `allow`, `prefer` (default) | without TLS | — |
//! | `require` | with TLS | chain and host name against the platform's roots; with `sslrootcert` naming a file, the chain against those roots (libpq's rule) |
//! | `verify-ca` | with TLS | chain against `sslrootcert`, which must name a file, not the host name |
//! | `verify-full` | with TLS | chain against `sslrootcert` (default: the platform's roots) and host name |
//!
//! `allow` and `prefer` connect without TLS: a connection that falls back
//! to plain text on any error protects nothing, and lockkit would rather
//! say so than pretend. `require` without `sslrootcert` checks more than
//! libpq's (which checks nothing). `sslrootcert=system` names the
//! platform's roots; `sslcert` and `sslkey` name the client's certificate
//! chain and key (PEM), for servers that authenticate clients by
//! certificate. libpq's default files under `~/.postgresql/` are not read.

use lockkit_core::{Error, ErrorKind, Result};
use tokio_postgres::Config;

use crate::conninfo::{SslMode, TlsSettings};
use crate::error::BACKEND;
use crate::session::Tls;

/// The connector for `settings`; sets the driver's own sslmode to match.
pub(crate) fn connector(config: &mut Config, settings: &TlsSettings, server: &str) -> Result<Tls> {
    let check =
        match settings.mode {
            SslMode::Disable | SslMode::Allow | SslMode::Prefer => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                None
            }
            // A chain checked against the platform's roots proves nothing
            // without the name: any public authority signs for any name.
            SslMode::Require | SslMode::VerifyCa => match settings.root_cert.as_deref() {
                Some(path) if path != "system" => Some(false),
                _ if settings.mode == SslMode::Require => Some(true),
                _ => return Err(tls_error(
                    server,
                    "sslmode=verify-ca needs sslrootcert naming the file of the authority that \
                     signs the server's certificate (against the platform's roots, a chain \
                     without its name proves nothing); or use sslmode=verify-full",
                )),
            },
            SslMode::VerifyFull => Some(true),
        };
    if check.is_some() {
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
    build(check, settings, server)
}

fn tls_error(server: &str, message: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Config, BACKEND, format!("{server}: {message}"))
}

#[cfg(feature = "tls")]
fn build(check: Option<bool>, settings: &TlsSettings, server: &str) -> Result<Tls> {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| tls_error(server, format_args!("TLS setup: {error}")))?;
    let Some(check_name) = check else {
        let config = builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        return Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config));
    };
    let mut roots = rustls::RootCertStore::empty();
    match settings.root_cert.as_deref() {
        None | Some("system") => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(tls_error(
                    server,
                    "sslmode needs trusted root certificates, and none were found on this \
                     machine; name a file of them with sslrootcert",
                ));
            }
        }
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|certificates| certificates.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|error| {
                    tls_error(server, format_args!("sslrootcert `{path}`: {error}"))
                })?;
            roots.add_parsable_certificates(certificates);
            if roots.is_empty() {
                return Err(tls_error(
                    server,
                    format_args!("sslrootcert `{path}` holds no usable certificate"),
                ));
            }
        }
    }
    let builder = if check_name {
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| tls_error(server, format_args!("TLS setup: {error}")))?;
        builder.with_webpki_verifier(verifier)
    } else {
        let verifier = verify_ca::ChainOnly {
            roots: Arc::new(roots),
            algorithms: provider.signature_verification_algorithms,
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
    };
    let config = match (&settings.client_cert, &settings.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certificates| certificates.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|error| tls_error(server, format_args!("sslcert `{cert}`: {error}")))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|error| tls_error(server, format_args!("sslkey `{key}`: {error}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| tls_error(server, format_args!("sslcert and sslkey: {error}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[cfg(not(feature = "tls"))]
fn build(check: Option<bool>, settings: &TlsSettings, server: &str) -> Result<Tls> {
    if check.is_some() {
        return Err(tls_error(
            server,
            format_args!(
                "sslmode={:?} needs feature `tls` of lockkit-postgres",
                settings.mode
            ),
        ));
    }
    Ok(tokio_postgres::NoTls)
}

/// `sslmode=verify-ca`: the chain must lead to a root of `sslrootcert`;
/// the name the certificate is for is not checked.
#[cfg(feature = "tls")]
mod verify_ca {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::WebPkiSupportedAlgorithms;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::server::ParsedCertificate;
    use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

    #[derive(Debug)]
    pub(super) struct ChainOnly {
        pub(super) roots: Arc<RootCertStore>,
        pub(super) algorithms: WebPkiSupportedAlgorithms,
    }

    impl ServerCertVerifier for ChainOnly {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            let certificate = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &certificate,
                &self.roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    }
}
