//! The one table from [`Error`] to the answer of each public protocol: an HTTP status
//! for REST and a gRPC code for the public gRPC API, side by side so the two cannot
//! drift apart. Classes and codes follow Qdrant (`Wrong input` → 400 / InvalidArgument,
//! `Not found` → 404 / NotFound, ...). The peer service keeps its own wire convention
//! (`api/peer.rs`), which the peer client maps back into errors.

use axum::http::StatusCode;
use tonic::Code;

use crate::error::Error;

/// HTTP status and gRPC code of an error.
pub fn classify(err: &Error) -> (StatusCode, Code) {
    match err {
        Error::BadInput(_) | Error::BadRequest(_) => {
            (StatusCode::BAD_REQUEST, Code::InvalidArgument)
        }
        Error::ChecksumMismatch { .. } => (StatusCode::BAD_REQUEST, Code::DataLoss),
        Error::NotFound(_) => (StatusCode::NOT_FOUND, Code::NotFound),
        Error::AlreadyExists(_) => (StatusCode::CONFLICT, Code::AlreadyExists),
        Error::Conflict(_) => (StatusCode::CONFLICT, Code::Aborted),
        Error::Forbidden(_) => (StatusCode::FORBIDDEN, Code::PermissionDenied),
        Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, Code::Unauthenticated),
        Error::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, Code::DeadlineExceeded),
        Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable),
        Error::InsufficientStorage(_) => {
            (StatusCode::INSUFFICIENT_STORAGE, Code::ResourceExhausted)
        }
        Error::Service(_) => (StatusCode::INTERNAL_SERVER_ERROR, Code::Internal),
    }
}

/// The HTTP status of an error.
pub fn http_status(err: &Error) -> StatusCode {
    classify(err).0
}

/// The gRPC status of an error, with Qdrant's message.
pub fn grpc_status(err: &Error) -> tonic::Status {
    let code = classify(err).1;
    if code == Code::Internal {
        tracing::error!(error = %err, "gRPC request failed");
    }
    tonic::Status::new(code, err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_protocols_agree_on_the_class() {
        let cases = [
            (Error::BadInput("x".into()), 400, Code::InvalidArgument),
            (Error::NotFound("x".into()), 404, Code::NotFound),
            (Error::AlreadyExists("x".into()), 409, Code::AlreadyExists),
            (Error::Forbidden("x".into()), 403, Code::PermissionDenied),
            (Error::Unauthorized("x".into()), 401, Code::Unauthenticated),
            (Error::Unavailable("x".into()), 503, Code::Unavailable),
            (Error::Service("x".into()), 500, Code::Internal),
        ];
        for (err, http, grpc) in cases {
            assert_eq!(classify(&err), (StatusCode::from_u16(http).unwrap(), grpc));
        }
    }
}
