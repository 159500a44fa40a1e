//! Small identifier types shared by every layer: peers, shards and point ids, and the
//! name prefixes no collection may use.
//!
//! `PointId` follows Qdrant: an unsigned integer or a UUID. On the wire it is a JSON
//! number or a UUID string; in order, every numeric id sorts before every UUID, which
//! is the order `scroll` pages through.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// A peer's persistent Raft id (random, non-zero, chosen once at first start).
pub type PeerId = u64;
/// A shard's number inside its collection (0..shard_number).
pub type ShardId = u32;
/// Prefixes of the working directories a peer keeps next to its collections (a recovery
/// being unpacked, data being deleted): no collection name may start with one.
pub const RESERVED_NAME_PREFIXES: [&str; 2] = [".recovery-", ".deleted-"];
/// The Qdrant API version shoal implements; clients compare it with their own.
pub const QDRANT_API_VERSION: &str = "1.19.0";
/// The default (unnamed) vector's internal name, as in Qdrant.
pub const DEFAULT_VECTOR: &str = "";

/// A point id: an unsigned integer or a UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PointId {
    Num(u64),
    Uuid(Uuid),
}

impl PointId {
    /// Stable 64-bit hash used to route a point to its shard; identical on every peer.
    pub fn routing_hash(&self) -> u64 {
        // FNV-1a over a tagged byte form: stable across builds and platforms,
        // unlike std's SipHash with random keys.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                hash ^= u64::from(*b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        match self {
            PointId::Num(n) => {
                feed(&[0]);
                feed(&n.to_le_bytes());
            }
            PointId::Uuid(u) => {
                feed(&[1]);
                feed(u.as_bytes());
            }
        }
        hash
    }
}

impl fmt::Display for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Uuid(u) => write!(f, "{u}"),
        }
    }
}

impl FromStr for PointId {
    type Err = String;

    /// Parses a path segment: digits are a numeric id, anything else must be a UUID.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(n) = s.parse::<u64>() {
            return Ok(PointId::Num(n));
        }
        Uuid::parse_str(s).map(PointId::Uuid).map_err(|_| {
            format!("Unable to parse point id `{s}`: expected an unsigned integer or a UUID")
        })
    }
}

impl Serialize for PointId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            PointId::Num(n) => serializer.serialize_u64(*n),
            PointId::Uuid(u) => serializer.collect_str(u),
        }
    }
}

impl<'de> Deserialize<'de> for PointId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = PointId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an unsigned integer or a UUID string")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PointId, E> {
                Ok(PointId::Num(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PointId, E> {
                u64::try_from(v).map(PointId::Num).map_err(|_| {
                    E::custom(format!(
                        "point id {v} is negative; ids are unsigned integers or UUIDs"
                    ))
                })
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<PointId, E> {
                Err(E::custom(format!(
                    "point id {v} is not an unsigned integer or a UUID"
                )))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PointId, E> {
                Uuid::parse_str(v).map(PointId::Uuid).map_err(|_| {
                    E::custom(format!(
                        "point id `{v}` is not a valid UUID or unsigned integer"
                    ))
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_ids_round_trip_as_json() {
        let num: PointId = serde_json::from_str("42").unwrap();
        assert_eq!(num, PointId::Num(42));
        let uuid: PointId =
            serde_json::from_str("\"5c56c793-69f3-4fbf-87e6-c4bf54c28c26\"").unwrap();
        assert_eq!(
            serde_json::to_string(&uuid).unwrap(),
            "\"5c56c793-69f3-4fbf-87e6-c4bf54c28c26\""
        );
        assert!(serde_json::from_str::<PointId>("-1").is_err());
        assert!(serde_json::from_str::<PointId>("\"nope\"").is_err());
        assert!(serde_json::from_str::<PointId>("1.5").is_err());
    }

    #[test]
    fn numeric_ids_sort_before_uuids() {
        let uuid = PointId::Uuid(Uuid::nil());
        assert!(PointId::Num(u64::MAX) < uuid);
    }
}
