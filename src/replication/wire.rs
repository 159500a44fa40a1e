//! What travels in the `bytes` fields of the peer service `Shards` for reads: a
//! [`ShardRead`] on the way in, a [`ShardReadResult`] on the way back, as serde JSON
//! (floats round-trip exactly, payloads stay JSON). Writes (`ShardOp`) travel in the
//! WAL's binary encoding instead (`remote::encode_op`).
//!
//! [`execute`] runs a read on a local shard. The node calls it for its own replicas and
//! for replicas asked by other peers, so a read gives the same answer wherever it runs.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::collection::point::{NamedVectors, Record, ScoredPoint, WithPayload, WithVector};
use crate::error::{Error, Result};
use crate::shard::filter::Filter;
use crate::shard::{LocalShard, SearchRequest};
use crate::types::PointId;

/// A read of one shard replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardRead {
    Retrieve {
        ids: Vec<PointId>,
        with_payload: WithPayload,
        with_vector: WithVector,
    },
    /// Up to `limit` points from `offset` in id order.
    Scroll {
        filter: Option<Filter>,
        offset: Option<PointId>,
        limit: usize,
        with_payload: WithPayload,
        with_vector: WithVector,
    },
    Count {
        filter: Option<Filter>,
    },
    Search(SearchSpec),
    /// Every stored vector of one point (the target of a query by point id).
    GetVectors {
        id: PointId,
    },
}

/// The answer to a [`ShardRead`], one variant per read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardReadResult {
    Records(Vec<Record>),
    Count(usize),
    Hits(Vec<ScoredPoint>),
    Vectors(Option<NamedVectors>),
}

/// [`SearchRequest`] in a form that crosses the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSpec {
    pub vector_name: String,
    pub vector: Vec<f32>,
    pub filter: Option<Filter>,
    pub limit: usize,
    pub score_threshold: Option<f32>,
    pub exact: bool,
    pub hnsw_ef: Option<usize>,
    pub with_payload: WithPayload,
    pub with_vector: WithVector,
}

impl From<SearchRequest> for SearchSpec {
    fn from(r: SearchRequest) -> Self {
        SearchSpec {
            vector_name: r.vector_name,
            vector: r.vector,
            filter: r.filter,
            limit: r.limit,
            score_threshold: r.score_threshold,
            exact: r.exact,
            hnsw_ef: r.hnsw_ef,
            with_payload: r.with_payload,
            with_vector: r.with_vector,
        }
    }
}

impl From<SearchSpec> for SearchRequest {
    fn from(s: SearchSpec) -> Self {
        SearchRequest {
            vector_name: s.vector_name,
            vector: s.vector,
            filter: s.filter,
            limit: s.limit,
            score_threshold: s.score_threshold,
            exact: s.exact,
            hnsw_ef: s.hnsw_ef,
            with_payload: s.with_payload,
            with_vector: s.with_vector,
        }
    }
}

/// Runs `read` on a local shard.
pub fn execute(shard: &LocalShard, read: ShardRead) -> Result<ShardReadResult> {
    Ok(match read {
        ShardRead::Retrieve {
            ids,
            with_payload,
            with_vector,
        } => ShardReadResult::Records(shard.retrieve(&ids, &with_payload, &with_vector)),
        ShardRead::Scroll {
            filter,
            offset,
            limit,
            with_payload,
            with_vector,
        } => ShardReadResult::Records(
            shard
                .scroll(filter.as_ref(), offset, limit, &with_payload, &with_vector)
                .0,
        ),
        ShardRead::Count { filter } => ShardReadResult::Count(shard.count(filter.as_ref())),
        ShardRead::Search(spec) => ShardReadResult::Hits(shard.search(&spec.into())?),
        ShardRead::GetVectors { id } => ShardReadResult::Vectors(shard.get_vectors(id)),
    })
}

impl ShardReadResult {
    pub fn into_records(self) -> Result<Vec<Record>> {
        match self {
            ShardReadResult::Records(records) => Ok(records),
            other => Err(mismatch("records", &other)),
        }
    }

    pub fn into_count(self) -> Result<usize> {
        match self {
            ShardReadResult::Count(count) => Ok(count),
            other => Err(mismatch("a count", &other)),
        }
    }

    pub fn into_hits(self) -> Result<Vec<ScoredPoint>> {
        match self {
            ShardReadResult::Hits(hits) => Ok(hits),
            other => Err(mismatch("search hits", &other)),
        }
    }

    pub fn into_vectors(self) -> Result<Option<NamedVectors>> {
        match self {
            ShardReadResult::Vectors(vectors) => Ok(vectors),
            other => Err(mismatch("vectors", &other)),
        }
    }
}

fn mismatch(expected: &str, got: &ShardReadResult) -> Error {
    let kind = match got {
        ShardReadResult::Records(_) => "records",
        ShardReadResult::Count(_) => "a count",
        ShardReadResult::Hits(_) => "search hits",
        ShardReadResult::Vectors(_) => "vectors",
    };
    Error::service(format!(
        "a replica answered {kind} where {expected} were asked for"
    ))
}

/// Serde JSON bytes of a wire value.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::service(format!("encoding a shard message: {e}")))
}

/// Reads a wire value; `what` names it in the error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::BadInput(format!("malformed {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::point::{PointRecord, VectorOutput};
    use crate::shard::ops::ShardOp;
    use serde_json::json;

    #[test]
    fn ops_and_results_round_trip_exactly() {
        let op = ShardOp::Upsert(vec![PointRecord {
            id: PointId::Num(7),
            vectors: NamedVectors::from([(String::new(), vec![0.1, -1.0e-7, 3.4028235e38])]),
            payload: serde_json::from_value(json!({"a": [1, 2.5, "x"]})).unwrap(),
        }]);
        use crate::replication::remote::{decode_op, encode_op};
        assert_eq!(decode_op(&encode_op(&op)).unwrap(), op);
        assert!(matches!(decode_op(b"\x01\x02"), Err(Error::BadInput(_))));

        let result = ShardReadResult::Hits(vec![ScoredPoint {
            id: PointId::Num(1),
            version: 3,
            score: 0.123_456_79,
            payload: None,
            vector: Some(VectorOutput::Single(vec![0.3, 0.7])),
        }]);
        let back: ShardReadResult = decode(&encode(&result).unwrap(), "result").unwrap();
        assert_eq!(back, result);

        let read = ShardRead::Retrieve {
            ids: vec![PointId::Num(1)],
            with_payload: serde_json::from_value(json!({"exclude": ["a"]})).unwrap(),
            with_vector: WithVector::Names(vec!["v".into()]),
        };
        let back: ShardRead = decode(&encode(&read).unwrap(), "read").unwrap();
        assert_eq!(back, read);
    }

    #[test]
    fn garbage_is_a_bad_input() {
        let err = decode::<ShardRead>(b"{nope", "shard read").unwrap_err();
        assert!(matches!(err, Error::BadInput(_)), "{err}");
    }
}
