//! The one mapping from [`crate::error::Error`] to HTTP statuses and the error envelope.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::envelope::error_response;
use crate::error::Error;

/// An error on its way out of a REST handler.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        ApiError(err)
    }
}

pub fn status_of(err: &Error) -> StatusCode {
    match err {
        Error::BadInput(_) | Error::BadRequest(_) | Error::ChecksumMismatch { .. } => {
            StatusCode::BAD_REQUEST
        }
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::AlreadyExists(_) | Error::Conflict(_) => StatusCode::CONFLICT,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        Error::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
        Error::Service(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        if status.is_server_error() {
            tracing::error!(error = %self.0, "request failed");
        }
        error_response(status, &self.0.to_string())
    }
}

/// What every REST handler returns.
pub type ApiResult<T> = Result<T, ApiError>;
