//! The write operations a shard applies, and their compact binary form for the WAL.
//!
//! [`ShardOp`] is also serde-serialisable (it is replicated to peers). The WAL form of a
//! record payload is `seq u64` followed by the op:
//! - tag `1` (upsert): `count u32`, then per point: id (see `binio`), `vectors u32`,
//!   per vector `name str, values f32s`, then the payload as length-prefixed JSON bytes
//!   (length 0 = empty payload). Vectors are raw little-endian floats, never JSON.
//! - tag `2` (any other op): length-prefixed JSON of the op; these carry no vectors.

use serde::{Deserialize, Serialize};

use crate::collection::point::{NamedVectors, Payload, PointRecord};
use crate::shard::binio::{self, Dec, DecodeError, DecodeResult};
use crate::shard::filter::Filter;
use crate::types::PointId;

/// Which points an operation touches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointSelector {
    Ids(Vec<PointId>),
    Filter(Filter),
}

/// One write to a shard. Applied in sequence-number order on every replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardOp {
    /// Inserts or replaces whole points (vectors and payload).
    Upsert(Vec<PointRecord>),
    Delete(PointSelector),
    /// Merges `payload` into each point's payload, at the nested path `key` if given.
    SetPayload {
        selector: PointSelector,
        payload: Payload,
        key: Option<String>,
    },
    OverwritePayload {
        selector: PointSelector,
        payload: Payload,
    },
    /// Removes the given keys (payload paths) from each point's payload.
    DeletePayload {
        selector: PointSelector,
        keys: Vec<String>,
    },
    ClearPayload {
        selector: PointSelector,
    },
}

const TAG_UPSERT: u8 = 1;
const TAG_JSON: u8 = 2;

/// Appends the record payload for `(seq, op)` to `out`.
pub fn encode(seq: u64, op: &ShardOp, out: &mut Vec<u8>) {
    binio::put_u64(out, seq);
    match op {
        ShardOp::Upsert(points) => {
            binio::put_u8(out, TAG_UPSERT);
            binio::put_u32(out, points.len() as u32);
            points.iter().for_each(|p| encode_point(p, out));
        }
        other => {
            binio::put_u8(out, TAG_JSON);
            // Serialising our own types to JSON cannot fail (string keys, no non-finite floats in filters).
            let json = serde_json::to_vec(other).unwrap_or_default();
            binio::put_bytes(out, &json);
        }
    }
}

fn encode_point(p: &PointRecord, out: &mut Vec<u8>) {
    binio::put_id(out, &p.id);
    binio::put_u32(out, p.vectors.len() as u32);
    for (name, values) in &p.vectors {
        binio::put_str(out, name);
        binio::put_f32s(out, values);
    }
    encode_payload(&p.payload, out);
}

/// A payload as length-prefixed JSON; an empty payload is length 0.
pub fn encode_payload(payload: &Payload, out: &mut Vec<u8>) {
    if payload.is_empty() {
        binio::put_u32(out, 0);
    } else {
        let json = serde_json::to_vec(payload).unwrap_or_default();
        binio::put_bytes(out, &json);
    }
}

pub fn decode_payload(d: &mut Dec<'_>) -> DecodeResult<Payload> {
    let bytes = d.bytes()?;
    if bytes.is_empty() {
        return Ok(Payload::new());
    }
    serde_json::from_slice(bytes).map_err(|e| DecodeError(format!("payload JSON: {e}")))
}

/// Decodes a record payload written by [`encode`].
pub fn decode(buf: &[u8]) -> DecodeResult<(u64, ShardOp)> {
    let mut d = Dec::new(buf);
    let seq = d.u64()?;
    let op = match d.u8()? {
        TAG_UPSERT => {
            let n = d.u32()? as usize;
            let mut points = Vec::with_capacity(n.min(buf.len()));
            for _ in 0..n {
                points.push(decode_point(&mut d)?);
            }
            ShardOp::Upsert(points)
        }
        TAG_JSON => {
            serde_json::from_slice(d.bytes()?).map_err(|e| DecodeError(format!("op JSON: {e}")))?
        }
        tag => return Err(DecodeError(format!("unknown op tag {tag}"))),
    };
    if !d.is_empty() {
        return Err(DecodeError("trailing bytes after op".into()));
    }
    Ok((seq, op))
}

fn decode_point(d: &mut Dec<'_>) -> DecodeResult<PointRecord> {
    let id = d.id()?;
    let count = d.u32()? as usize;
    let mut vectors = NamedVectors::new();
    for _ in 0..count {
        let name = d.string()?;
        vectors.insert(name, d.f32s()?);
    }
    let payload = decode_payload(d)?;
    Ok(PointRecord {
        id,
        vectors,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: serde_json::Value) -> Payload {
        serde_json::from_value(v).unwrap()
    }

    fn round_trip(op: ShardOp) {
        let mut buf = Vec::new();
        encode(77, &op, &mut buf);
        assert_eq!(decode(&buf).unwrap(), (77, op.clone()));
        // The serde form (used for replication) round-trips as well.
        let json = serde_json::to_string(&op).unwrap();
        assert_eq!(serde_json::from_str::<ShardOp>(&json).unwrap(), op);
    }

    #[test]
    fn every_op_round_trips() {
        let filter: Filter =
            serde_json::from_value(json!({"must": [{"key": "a", "match": {"value": 1}}]})).unwrap();
        let uuid = PointId::Uuid(uuid::Uuid::from_u128(5));
        round_trip(ShardOp::Upsert(vec![
            PointRecord {
                id: PointId::Num(1),
                vectors: NamedVectors::from([(String::new(), vec![0.5, -1.0])]),
                payload: payload(json!({"a": 1, "b": [1, "x"]})),
            },
            PointRecord {
                id: uuid,
                vectors: NamedVectors::from([
                    ("img".into(), vec![1.0]),
                    ("txt".into(), vec![2.0, 3.0]),
                ]),
                payload: Payload::new(),
            },
        ]));
        round_trip(ShardOp::Delete(PointSelector::Ids(vec![
            PointId::Num(1),
            uuid,
        ])));
        round_trip(ShardOp::Delete(PointSelector::Filter(filter.clone())));
        round_trip(ShardOp::SetPayload {
            selector: PointSelector::Filter(filter.clone()),
            payload: payload(json!({"x": {"y": 2}})),
            key: Some("a.b".into()),
        });
        round_trip(ShardOp::OverwritePayload {
            selector: PointSelector::Ids(vec![uuid]),
            payload: Payload::new(),
        });
        round_trip(ShardOp::DeletePayload {
            selector: PointSelector::Filter(filter),
            keys: vec!["a".into()],
        });
        round_trip(ShardOp::ClearPayload {
            selector: PointSelector::Ids(vec![]),
        });
    }

    #[test]
    fn truncated_records_do_not_decode() {
        let mut buf = Vec::new();
        let op = ShardOp::Upsert(vec![PointRecord {
            id: PointId::Num(1),
            vectors: NamedVectors::from([(String::new(), vec![1.0; 8])]),
            payload: Payload::new(),
        }]);
        encode(1, &op, &mut buf);
        for cut in [1, 9, buf.len() - 1] {
            assert!(decode(&buf[..cut]).is_err());
        }
    }
}
