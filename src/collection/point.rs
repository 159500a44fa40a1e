//! The shapes of points as Qdrant's REST API reads and writes them: ids, vectors,
//! payloads, the records returned by retrieve/scroll, scored points returned by search,
//! and the `with_payload` / `with_vector` selectors.
//!
//! Internally a point's vectors are always a [`NamedVectors`] map; the unnamed default
//! vector lives under the name `""` ([`DEFAULT_VECTOR`]). Conversion back to the wire
//! shape (a bare list for the default vector) happens in [`VectorOutput::from_named`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::types::{PointId, DEFAULT_VECTOR};

/// A point's JSON payload: always an object.
pub type Payload = Map<String, Value>;

/// Vectors of one point by name; `""` is the default vector.
pub type NamedVectors = BTreeMap<String, Vec<f32>>;

/// A point as stored and as replicated: id, vectors by name, payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointRecord {
    pub id: PointId,
    pub vectors: NamedVectors,
    pub payload: Payload,
}

/// `vector` of an upserted point: a bare list (default vector) or a map of named vectors.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum VectorInput {
    Single(Vec<f32>),
    Named(BTreeMap<String, Vec<f32>>),
}

impl VectorInput {
    pub fn into_named(self) -> NamedVectors {
        match self {
            VectorInput::Single(v) => NamedVectors::from([(DEFAULT_VECTOR.to_string(), v)]),
            VectorInput::Named(map) => map,
        }
    }
}

/// `vector` of a returned point: the wire form of [`NamedVectors`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VectorOutput {
    Single(Vec<f32>),
    Named(BTreeMap<String, Vec<f32>>),
}

impl VectorOutput {
    /// Back to the internal form (a bare list is the default vector).
    pub fn into_named(self) -> NamedVectors {
        match self {
            VectorOutput::Single(v) => NamedVectors::from([(DEFAULT_VECTOR.to_string(), v)]),
            VectorOutput::Named(map) => map,
        }
    }

    /// A map that holds only the default vector is shown as a bare list, as Qdrant does.
    pub fn from_named(mut vectors: NamedVectors) -> Self {
        if vectors.len() == 1 {
            if let Some(v) = vectors.remove(DEFAULT_VECTOR) {
                return VectorOutput::Single(v);
            }
        }
        VectorOutput::Named(vectors)
    }
}

/// A point in an upsert request (`{"points": [...]}` form).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointStruct {
    pub id: PointId,
    pub vector: VectorInput,
    #[serde(default)]
    pub payload: Option<Payload>,
}

/// `with_payload`: true/false, a list of keys to include, or `{include}` / `{exclude}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WithPayload {
    Enable(bool),
    Fields(Vec<String>),
    Selector(PayloadSelector),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadSelector {
    Include(Vec<String>),
    Exclude(Vec<String>),
}

impl Default for WithPayload {
    fn default() -> Self {
        WithPayload::Enable(false)
    }
}

impl WithPayload {
    /// The payload to return for a point, or `None` when payloads are not requested.
    pub fn select(&self, payload: &Payload) -> Option<Payload> {
        match self {
            WithPayload::Enable(false) => None,
            WithPayload::Enable(true) => Some(payload.clone()),
            WithPayload::Fields(keys) | WithPayload::Selector(PayloadSelector::Include(keys)) => {
                Some(
                    payload
                        .iter()
                        .filter(|(k, _)| keys.contains(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )
            }
            WithPayload::Selector(PayloadSelector::Exclude(keys)) => Some(
                payload
                    .iter()
                    .filter(|(k, _)| !keys.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        }
    }
}

/// `with_vector`: true/false or a list of vector names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WithVector {
    Enable(bool),
    Names(Vec<String>),
}

impl Default for WithVector {
    fn default() -> Self {
        WithVector::Enable(false)
    }
}

impl WithVector {
    pub fn wants_any(&self) -> bool {
        !matches!(self, WithVector::Enable(false))
    }

    /// Keeps the requested vectors of a point, or `None` when vectors are not requested.
    pub fn select(&self, vectors: &NamedVectors) -> Option<NamedVectors> {
        match self {
            WithVector::Enable(false) => None,
            WithVector::Enable(true) => Some(vectors.clone()),
            WithVector::Names(names) => Some(
                vectors
                    .iter()
                    .filter(|(k, _)| names.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        }
    }
}

/// A point as returned by retrieve and scroll (also what a peer's replica answers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: PointId,
    pub payload: Option<Payload>,
    pub vector: Option<VectorOutput>,
}

/// A point as returned by search and query (also what a peer's replica answers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredPoint {
    pub id: PointId,
    pub version: u64,
    pub score: f32,
    pub payload: Option<Payload>,
    pub vector: Option<VectorOutput>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn with_payload_selects_keys() {
        let payload: Payload = serde_json::from_value(json!({"a": 1, "b": 2})).unwrap();
        let include: WithPayload = serde_json::from_value(json!({"include": ["a"]})).unwrap();
        assert_eq!(
            Value::Object(include.select(&payload).unwrap()),
            json!({"a": 1})
        );
        let exclude: WithPayload = serde_json::from_value(json!({"exclude": ["a"]})).unwrap();
        assert_eq!(
            Value::Object(exclude.select(&payload).unwrap()),
            json!({"b": 2})
        );
        let fields: WithPayload = serde_json::from_value(json!(["b"])).unwrap();
        assert_eq!(
            Value::Object(fields.select(&payload).unwrap()),
            json!({"b": 2})
        );
        assert_eq!(WithPayload::Enable(false).select(&payload), None);
    }

    #[test]
    fn default_vector_is_shown_as_a_list() {
        let named = VectorInput::Single(vec![1.0, 2.0]).into_named();
        assert_eq!(
            serde_json::to_value(VectorOutput::from_named(named)).unwrap(),
            json!([1.0, 2.0])
        );
        let named =
            VectorInput::Named(BTreeMap::from([("img".to_string(), vec![1.0])])).into_named();
        assert_eq!(
            serde_json::to_value(VectorOutput::from_named(named)).unwrap(),
            json!({"img": [1.0]})
        );
    }
}
