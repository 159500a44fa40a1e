//! Conversions between Qdrant's gRPC messages and shoal's own types. Nothing here
//! decides anything: a message becomes the value the REST layer would have built from
//! its JSON body (often through that very JSON shape, so both APIs share one validation),
//! and a node answer becomes a message. Kinds of input shoal does not serve are
//! rejected here with `Wrong input`, naming the field.

pub mod collections;
pub mod points;
pub mod snapshots;
pub mod values;

use crate::error::Error;

/// `Wrong input: <what> is not supported by shoal`.
pub fn unsupported(what: &str) -> Error {
    Error::BadInput(format!("{what} is not supported by shoal"))
}

/// A count from a message (u64) as usize.
pub fn to_usize(value: u64, field: &str) -> Result<usize, Error> {
    usize::try_from(value).map_err(|_| Error::BadInput(format!("{field}: {value} is too large")))
}
