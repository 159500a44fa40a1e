//! Who may call the peer port: the cluster secret check and the port's TLS settings.
//!
//! [`PeerKeyLayer`] is a tower layer in front of every peer service. It sees the method
//! path and the metadata before the message is decoded, compares the
//! [`PEER_KEY_HEADER`] metadata with `cluster.p2p.api_key` in constant time, and answers
//! `Unauthenticated` itself when it is missing or wrong: the service is never called, so
//! nothing is decoded, stepped, applied or installed. Refusals are logged at most once per
//! [`REFUSAL_LOG_EVERY`], with the number left unlogged in between.
//!
//! [`server_tls`] builds the peer port's TLS (`cluster.p2p.enable_tls`): `tls.cert` /
//! `tls.key` as its identity and, with `service.verify_https_client_certificate`, client
//! certificates required and verified against `tls.ca_cert` (mTLS).

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http;
use futures::future::{Either, Ready};
use parking_lot::Mutex;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tower::{Layer, Service};

use crate::api::auth::same_key;
use crate::settings::Settings;
use crate::transport::PEER_KEY_HEADER;

/// At most one refusal log line per this long.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The peer port's TLS configuration; `None` when `cluster.p2p.enable_tls` is off.
pub fn server_tls(settings: &Settings) -> anyhow::Result<Option<ServerTlsConfig>> {
    if !settings.cluster.p2p.enable_tls {
        return Ok(None);
    }
    let (cert, key) = crate::api::tls::read_pem_files(&settings.tls)?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if settings.service.verify_https_client_certificate {
        let ca = crate::api::tls::read_ca_file(&settings.tls)?;
        config = config.client_ca_root(Certificate::from_pem(ca));
    }
    Ok(Some(config))
}

/// The cluster secret check; see the module doc.
#[derive(Clone)]
pub struct PeerKeyLayer {
    check: Option<Arc<KeyCheck>>,
}

impl PeerKeyLayer {
    /// `None`: no secret configured, every call passes.
    pub fn new(secret: Option<&str>) -> PeerKeyLayer {
        PeerKeyLayer {
            check: secret.map(|secret| {
                Arc::new(KeyCheck {
                    secret: secret.to_string(),
                    log: Mutex::new(RefusalLog::default()),
                })
            }),
        }
    }
}

impl<S> Layer<S> for PeerKeyLayer {
    type Service = PeerKeyChecked<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PeerKeyChecked {
            inner,
            check: self.check.clone(),
        }
    }
}

/// A peer service behind the cluster secret check.
#[derive(Clone)]
pub struct PeerKeyChecked<S> {
    inner: S,
    check: Option<Arc<KeyCheck>>,
}

impl<S, B, R> Service<http::Request<B>> for PeerKeyChecked<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Some(check) = &self.check {
            if let Err(reason) = check.verify(request.headers()) {
                check.log_refusal(reason, request.uri().path(), remote_addr(&request));
                let status = tonic::Status::unauthenticated(format!(
                    "peer call refused: {reason} (cluster.p2p.api_key)"
                ));
                return Either::Left(futures::future::ready(Ok(status.into_http::<R>())));
            }
        }
        Either::Right(self.inner.call(request))
    }
}

struct KeyCheck {
    secret: String,
    log: Mutex<RefusalLog>,
}

impl KeyCheck {
    fn verify(&self, headers: &http::HeaderMap) -> Result<(), &'static str> {
        let Some(value) = headers.get(PEER_KEY_HEADER) else {
            return Err("no peer key");
        };
        let Ok(presented) = value.to_str() else {
            return Err("wrong peer key");
        };
        if same_key(&self.secret, presented) {
            Ok(())
        } else {
            Err("wrong peer key")
        }
    }

    fn log_refusal(&self, reason: &str, path: &str, remote: Option<SocketAddr>) {
        let mut log = self.log.lock();
        let now = Instant::now();
        if log
            .last
            .is_some_and(|last| now.duration_since(last) < REFUSAL_LOG_EVERY)
        {
            log.unlogged += 1;
            return;
        }
        let unlogged = std::mem::take(&mut log.unlogged);
        log.last = Some(now);
        drop(log);
        let remote = remote.map(|a| a.to_string()).unwrap_or_default();
        tracing::warn!(
            reason,
            method = path,
            remote,
            refused_unlogged = unlogged,
            "refused a call on the peer port (missing or wrong cluster.p2p.api_key)"
        );
    }
}

/// When the last refusal was logged and how many were refused since without a line.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    unlogged: u64,
}

/// The caller's address, over plain TCP or TLS.
fn remote_addr<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|tls| tls.get_ref().remote_addr())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(value) = value {
            h.insert(PEER_KEY_HEADER, value.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_the_exact_secret_passes() {
        let layer = PeerKeyLayer::new(Some("s3cret"));
        let check = layer.check.as_ref().unwrap();
        assert!(check.verify(&headers(Some("s3cret"))).is_ok());
        assert_eq!(check.verify(&headers(None)), Err("no peer key"));
        for wrong in ["", "s3cre", "s3cret!", "S3CRET", "x3cret"] {
            assert_eq!(
                check.verify(&headers(Some(wrong))),
                Err("wrong peer key"),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn refusals_are_logged_at_most_once_per_period() {
        let layer = PeerKeyLayer::new(Some("k"));
        let check = layer.check.as_ref().unwrap();
        for _ in 0..5 {
            check.log_refusal("no peer key", "/shoal.peer.Shards/Apply", None);
        }
        let log = check.log.lock();
        assert!(log.last.is_some());
        assert_eq!(
            log.unlogged, 4,
            "the first refusal is logged, the rest counted"
        );
    }
}
