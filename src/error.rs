//! The one error type of shoal. Each variant is a class that the API layer maps to an
//! HTTP status and a gRPC code (in `api/`, the only place that knows about transports).
//! Messages carry Qdrant's prefixes (`Wrong input: `, `Not found: `, ...) because
//! clients and operators match on them.

use std::io;

/// Result with shoal's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is well-formed but its content is wrong (400).
    #[error("Wrong input: {0}")]
    BadInput(String),
    /// The request cannot be served as asked (400).
    #[error("Bad request: {0}")]
    BadRequest(String),
    /// A collection, alias, point, shard or snapshot does not exist (404).
    #[error("Not found: {0}")]
    NotFound(String),
    /// The thing to create exists already (409).
    #[error("Wrong input: {0}")]
    AlreadyExists(String),
    /// Another operation holds the resource; try again later (409).
    #[error("Conflict: {0}")]
    Conflict(String),
    /// A checksum given by the client does not match the data (400).
    #[error("Checksum mismatch: expected {expected}, actual {actual}")]
    ChecksumMismatch { expected: String, actual: String },
    /// The operation is not allowed by configuration or by the caller's key (403).
    #[error("Forbidden: {0}")]
    Forbidden(String),
    /// No API key, or a wrong one (401).
    #[error("Unauthorized: {0}")]
    Unauthorized(String),
    /// The operation did not finish in time (408).
    #[error("Timeout: {0}")]
    Timeout(String),
    /// A shard or the cluster cannot serve the request right now (503).
    #[error("Service unavailable: {0}")]
    Unavailable(String),
    /// The disk is full (507).
    #[error("Insufficient storage: {0}")]
    InsufficientStorage(String),
    /// Anything else: I/O, corrupt files, bugs (500).
    #[error("Service internal error: {0}")]
    Service(String),
}

impl Error {
    pub fn collection_not_found(name: &str) -> Self {
        Error::NotFound(format!("Collection `{name}` doesn't exist!"))
    }

    pub fn service(context: impl std::fmt::Display) -> Self {
        Error::Service(context.to_string())
    }

    /// Wraps an I/O error with what was being done; a full disk becomes
    /// [`Error::InsufficientStorage`] so clients see 507, not 500.
    pub fn io(context: impl std::fmt::Display, err: io::Error) -> Self {
        if err.raw_os_error() == Some(libc::ENOSPC) || err.kind() == io::ErrorKind::StorageFull {
            Error::InsufficientStorage(format!("{context}: {err}"))
        } else {
            Error::Service(format!("{context}: {err}"))
        }
    }

    /// Errors caused by the request itself: the same on every peer that applies it.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::BadInput(_)
                | Error::BadRequest(_)
                | Error::NotFound(_)
                | Error::AlreadyExists(_)
                | Error::Conflict(_)
                | Error::ChecksumMismatch { .. }
                | Error::Forbidden(_)
        )
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::io("I/O error", err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_is_insufficient_storage() {
        let err = Error::io("writing wal", io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(matches!(err, Error::InsufficientStorage(_)));
        assert!(err
            .to_string()
            .starts_with("Insufficient storage: writing wal"));
    }

    #[test]
    fn messages_carry_qdrant_prefixes() {
        assert_eq!(
            Error::collection_not_found("c").to_string(),
            "Not found: Collection `c` doesn't exist!"
        );
    }
}
