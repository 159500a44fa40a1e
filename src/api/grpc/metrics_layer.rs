//! Records every public gRPC response in [`crate::metrics::Metrics::grpc`], by method path
//! and gRPC status code, as a tower layer in front of every service (refusals of the key
//! check included).
//!
//! The code is read from the response headers (tonic answers errors "trailers-only", with
//! `grpc-status` in the headers); a response without it carries its status in the
//! trailers, which tonic sends only for successful calls, so it counts as `0` (OK). The
//! duration runs until the response headers are ready.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use tower::{Layer, Service};

use crate::metrics::{Metrics, ResponseKey};

/// Longest method path recorded as it is; longer or foreign paths count as `other`.
const MAX_PATH: usize = 128;

#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        MetricsLayer { metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Recorded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Recorded {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Recorded<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// The endpoint label of a method path: Qdrant's services and the standard ones as they
/// are, anything else folded so that hostile paths cannot grow the map.
fn endpoint_of(path: &str) -> String {
    let known = path.starts_with("/qdrant.") || path.starts_with("/grpc.");
    if known && path.len() <= MAX_PATH {
        path.to_string()
    } else {
        "other".to_string()
    }
}

impl<S, B, R> Service<axum::http::Request<B>> for Recorded<S>
where
    S: Service<axum::http::Request<B>, Response = axum::http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let endpoint = endpoint_of(request.uri().path());
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            if let Ok(response) = &response {
                let status = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u16>().ok())
                    .unwrap_or(0);
                let key = ResponseKey {
                    method: String::new(),
                    endpoint,
                    status,
                };
                metrics.grpc.record(key, started.elapsed());
            }
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_paths_are_folded() {
        assert_eq!(
            endpoint_of("/qdrant.Points/Search"),
            "/qdrant.Points/Search"
        );
        assert_eq!(endpoint_of("/evil/x"), "other");
        assert_eq!(
            endpoint_of(&format!("/qdrant.{}", "a".repeat(200))),
            "other"
        );
    }
}
