//! Requests larger than `service.max_request_size_mb` are refused by tonic's decoder
//! with `OutOfRange` before they are read; this layer turns that answer into the
//! `InvalidArgument` that Qdrant's API gives for bad input, with a message naming the
//! setting. shoal's own errors never map to `OutOfRange` (see `api/errors.rs`), so the
//! status identifies the case.

use std::task::{Context, Poll};

use axum::http::{HeaderValue, Response};
use futures::future::MapOk;
use futures::TryFutureExt;
use tower::{Layer, Service};

const GRPC_STATUS_OUT_OF_RANGE: &str = "11";
const GRPC_STATUS_INVALID_ARGUMENT: &str = "3";
const MESSAGE: &str = "Wrong input: the request message is larger than service.max_request_size_mb";

#[derive(Clone, Default)]
pub struct OversizeLayer;

impl<S> Layer<S> for OversizeLayer {
    type Service = Oversize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Oversize(inner)
    }
}

#[derive(Clone)]
pub struct Oversize<S>(S);

impl<S, Req, R> Service<Req> for Oversize<S>
where
    S: Service<Req, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = MapOk<S::Future, fn(Response<R>) -> Response<R>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        self.0.call(request).map_ok(as_invalid_argument)
    }
}

/// Rewrites a trailers-only `OutOfRange` answer (how tonic refuses a message that is
/// too large) into `InvalidArgument`.
fn as_invalid_argument<R>(mut response: Response<R>) -> Response<R> {
    let headers = response.headers_mut();
    if headers
        .get("grpc-status")
        .is_some_and(|status| status == GRPC_STATUS_OUT_OF_RANGE)
    {
        headers.insert(
            "grpc-status",
            HeaderValue::from_static(GRPC_STATUS_INVALID_ARGUMENT),
        );
        headers.insert("grpc-message", HeaderValue::from_static(MESSAGE));
    }
    response
}
