//! TLS of the public ports (`service.enable_tls`, `tls.cert` / `tls.key` PEM files),
//! with rustls and its ring provider. gRPC hands the PEM pair to tonic; REST accepts
//! connections through [`TlsListener`], which finishes each handshake on its own task
//! so that a slow or broken client never holds up the others. With
//! `service.verify_https_client_certificate` both require a client certificate signed by
//! `tls.ca_cert` ([`read_ca_file`]); the peer port's TLS is `peer_auth.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::settings::TlsSettings;

/// Handshaken connections waiting for the server to take them.
const ACCEPT_QUEUE: usize = 64;

/// The certificate chain and key files, as read.
pub fn read_pem_files(tls: &TlsSettings) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
        anyhow::bail!("service.enable_tls needs tls.cert and tls.key");
    };
    let cert_pem =
        std::fs::read(cert).with_context(|| format!("tls.cert: cannot read {}", cert.display()))?;
    let key_pem =
        std::fs::read(key).with_context(|| format!("tls.key: cannot read {}", key.display()))?;
    Ok((cert_pem, key_pem))
}

/// The CA file (`tls.ca_cert`) that client certificates must be signed by, as read.
pub fn read_ca_file(tls: &TlsSettings) -> anyhow::Result<Vec<u8>> {
    let Some(ca) = &tls.ca_cert else {
        anyhow::bail!("service.verify_https_client_certificate needs tls.ca_cert");
    };
    std::fs::read(ca).with_context(|| format!("tls.ca_cert: cannot read {}", ca.display()))
}

/// A rustls server configuration (HTTP/1.1 and HTTP/2 by ALPN) from the PEM files; with
/// `verify_client`, only clients with a certificate signed by `tls.ca_cert` get through
/// the handshake.
pub fn server_config(
    tls: &TlsSettings,
    verify_client: bool,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (cert_pem, key_pem) = read_pem_files(tls)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("tls.cert: not a PEM certificate chain")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).context("tls.key: not a PEM private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if verify_client {
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&read_ca_file(tls)?) {
            roots
                .add(ca.context("tls.ca_cert: not a PEM certificate")?)
                .context("tls.ca_cert: not a usable CA certificate")?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("tls.ca_cert: cannot verify client certificates with it")?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("tls.cert / tls.key do not form a usable identity")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An axum listener that yields TLS streams.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Starts accepting on `listener`; handshakes run on their own tasks.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (sender, ready) = mpsc::channel(ACCEPT_QUEUE);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(%err, "REST accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, handed_over) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(stream) => {
                            let _ = handed_over.send((stream, peer)).await;
                        }
                        Err(err) => tracing::debug!(%err, %peer, "TLS handshake failed"),
                    }
                });
                if sender.is_closed() {
                    break;
                }
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends when this listener is gone; wait forever.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
