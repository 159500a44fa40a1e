//! Snapshot file names, as Qdrant forms them, and the check that a name taken from a
//! request is a plain file name (never a path that could leave its directory).

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::types::{PeerId, ShardId};

/// Extension of every snapshot archive.
pub const EXTENSION: &str = ".snapshot";
/// Suffix of the sha256 sidecar: `<name>.snapshot.checksum`.
pub const CHECKSUM_SUFFIX: &str = ".checksum";

fn timestamp(now: DateTime<Utc>) -> String {
    now.format("%Y-%m-%d-%H-%M-%S").to_string()
}

/// `<collection>-<peer_id>-<YYYY-MM-DD-HH-MM-SS>.snapshot`
pub fn collection_snapshot(collection: &str, peer: PeerId, now: DateTime<Utc>) -> String {
    format!("{collection}-{peer}-{}{EXTENSION}", timestamp(now))
}

/// `<collection>-shard-<shard_id>-<YYYY-MM-DD-HH-MM-SS>.snapshot`
pub fn shard_snapshot(collection: &str, shard: ShardId, now: DateTime<Utc>) -> String {
    format!("{collection}-shard-{shard}-{}{EXTENSION}", timestamp(now))
}

/// `full-snapshot-<YYYY-MM-DD-HH-MM-SS>.snapshot`
pub fn full_snapshot(now: DateTime<Utc>) -> String {
    format!("full-snapshot-{}{EXTENSION}", timestamp(now))
}

/// A snapshot name from a request must be a plain file name. Anything else is reported
/// as "not found", as Qdrant does, so probing for paths reveals nothing.
pub fn check_file_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\\')
        && !name.contains('\0');
    if plain {
        Ok(())
    } else {
        Err(Error::NotFound(format!("Snapshot {name} not found")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_follow_qdrant() {
        let now = Utc.with_ymd_and_hms(2024, 7, 22, 8, 31, 55).unwrap();
        assert_eq!(
            collection_snapshot("c", 3766212330831337, now),
            "c-3766212330831337-2024-07-22-08-31-55.snapshot"
        );
        assert_eq!(
            shard_snapshot("c", 2, now),
            "c-shard-2-2024-07-22-08-31-55.snapshot"
        );
        assert_eq!(
            full_snapshot(now),
            "full-snapshot-2024-07-22-08-31-55.snapshot"
        );
    }

    #[test]
    fn only_plain_file_names_pass() {
        assert!(check_file_name("a.snapshot").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", "/etc/passwd", "a\\b", "a\0b"] {
            assert!(
                matches!(check_file_name(bad), Err(Error::NotFound(_))),
                "{bad:?}"
            );
        }
    }
}
