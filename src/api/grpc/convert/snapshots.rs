//! Snapshot requests' names and snapshot descriptions ⇄ `qdrant.SnapshotDescription`.

use crate::api::grpc::proto;
use crate::consensus::state::validate_name;
use crate::error::{Error, Result};
use crate::snapshot::store::SnapshotDescription;

/// The collection name of a snapshot request, validated as Qdrant's gRPC API does
/// (`InvalidArgument` for an empty, overlong or path-like name).
pub fn collection_name(name: String) -> Result<String> {
    validate_name(&name)?;
    Ok(name)
}

/// A snapshot name must not be empty.
pub fn snapshot_name(name: String) -> Result<String> {
    if name.is_empty() {
        return Err(Error::BadInput("snapshot_name: must not be empty".into()));
    }
    Ok(name)
}

/// `creation_time` is naive UTC `YYYY-MM-DDTHH:MM:SS`; unset when unknown (nanos 0).
pub fn description(d: SnapshotDescription) -> proto::SnapshotDescription {
    let creation_time = d.creation_time.as_deref().and_then(|t| {
        chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S")
            .ok()
            .map(|t| prost_types::Timestamp {
                seconds: t.and_utc().timestamp(),
                nanos: 0,
            })
    });
    proto::SnapshotDescription {
        name: d.name,
        creation_time,
        size: i64::try_from(d.size).unwrap_or(i64::MAX),
        checksum: d.checksum,
    }
}

pub fn descriptions(list: Vec<SnapshotDescription>) -> Vec<proto::SnapshotDescription> {
    list.into_iter().map(description).collect()
}
