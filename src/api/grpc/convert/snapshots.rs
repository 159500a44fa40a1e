//! Snapshot descriptions ⇄ `qdrant.SnapshotDescription`.

use crate::api::grpc::proto;
use crate::snapshot::store::SnapshotDescription;

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
