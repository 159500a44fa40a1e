//! The API key check of the gRPC port, as a tower layer in front of every service: it
//! sees the method path and the metadata before the message is decoded, asks
//! [`crate::api::auth`] what the method needs, and answers `Unauthenticated` or
//! `PermissionDenied` itself when the key does not grant it.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready};
use tower::{Layer, Service};

use crate::api::auth::{grpc_access, ApiKeys};
use crate::api::errors::grpc_status;

#[derive(Clone)]
pub struct AuthLayer {
    keys: Option<Arc<ApiKeys>>,
}

impl AuthLayer {
    /// `None`: no keys configured, every call passes.
    pub fn new(keys: Option<Arc<ApiKeys>>) -> Self {
        AuthLayer { keys }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            keys: self.keys.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    keys: Option<Arc<ApiKeys>>,
}

impl<S, B, R> Service<axum::http::Request<B>> for Authenticated<S>
where
    S: Service<axum::http::Request<B>, Response = axum::http::Response<R>>,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        if let Some(keys) = &self.keys {
            let needed = grpc_access(request.uri().path());
            if let Err(err) = keys.check(request.headers(), needed) {
                let response = grpc_status(&err).into_http::<R>();
                return Either::Left(futures::future::ready(Ok(response)));
            }
        }
        Either::Right(self.inner.call(request))
    }
}
