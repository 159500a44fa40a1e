//! Points messages ⇄ shoal's point types: ids, vectors, payload and vector selectors,
//! filters (through their JSON shape, so gRPC filters are validated exactly as REST
//! ones), point selectors, search and query requests, and the points that come back.

use serde_json::{json, Value as Json};

use super::values::{payload_from_grpc, payload_to_grpc};
use super::{to_usize, unsupported};
use crate::api::grpc::proto;
use crate::collection::point::{
    NamedVectors, PayloadSelector, PointRecord, Record, ScoredPoint, VectorOutput, WithPayload,
    WithVector,
};
use crate::error::{Error, Result};
use crate::node::points::{Query, QueryTarget, UpdateResult};
use crate::shard::filter::Filter;
use crate::shard::ops::PointSelector;
use crate::types::{PointId, DEFAULT_VECTOR};

pub fn point_id(id: Option<proto::PointId>) -> Result<PointId> {
    use proto::point_id::PointIdOptions;
    match id.and_then(|id| id.point_id_options) {
        Some(PointIdOptions::Num(n)) => Ok(PointId::Num(n)),
        Some(PointIdOptions::Uuid(s)) => s.parse().map_err(Error::BadInput),
        None => Err(Error::BadInput("point id is missing".into())),
    }
}

pub fn point_ids(ids: Vec<proto::PointId>) -> Result<Vec<PointId>> {
    ids.into_iter().map(|id| point_id(Some(id))).collect()
}

pub fn point_id_to_grpc(id: PointId) -> proto::PointId {
    use proto::point_id::PointIdOptions;
    proto::PointId {
        point_id_options: Some(match id {
            PointId::Num(n) => PointIdOptions::Num(n),
            PointId::Uuid(u) => PointIdOptions::Uuid(u.to_string()),
        }),
    }
}

/// One dense vector of an upsert (the `dense` variant or the legacy `data` list).
fn dense_vector(vector: proto::Vector) -> Result<Vec<f32>> {
    use proto::vector::Vector as Kind;
    match vector.vector {
        Some(Kind::Dense(dense)) => Ok(dense.data),
        Some(Kind::Sparse(_)) => Err(unsupported("sparse vectors")),
        Some(Kind::MultiDense(_)) => Err(unsupported("multi-vectors")),
        Some(Kind::Document(_) | Kind::Image(_) | Kind::Object(_)) => {
            Err(unsupported("inference (document, image or object vectors)"))
        }
        None if vector.indices.is_some() => Err(unsupported("sparse vectors")),
        None if vector.vectors_count.is_some() => Err(unsupported("multi-vectors")),
        None => Ok(vector.data),
    }
}

fn named_vectors(vectors: Option<proto::Vectors>) -> Result<NamedVectors> {
    use proto::vectors::VectorsOptions;
    match vectors.and_then(|v| v.vectors_options) {
        Some(VectorsOptions::Vector(v)) => Ok(NamedVectors::from([(
            DEFAULT_VECTOR.to_string(),
            dense_vector(v)?,
        )])),
        Some(VectorsOptions::Vectors(named)) => named
            .vectors
            .into_iter()
            .map(|(name, v)| Ok((name, dense_vector(v)?)))
            .collect(),
        None => Err(Error::BadInput("point has no `vectors`".into())),
    }
}

pub fn point_records(points: Vec<proto::PointStruct>) -> Result<Vec<PointRecord>> {
    points
        .into_iter()
        .map(|p| {
            Ok(PointRecord {
                id: point_id(p.id)?,
                vectors: named_vectors(p.vectors)?,
                payload: payload_from_grpc(p.payload)?,
            })
        })
        .collect()
}

fn vectors_to_grpc(vector: VectorOutput) -> proto::VectorsOutput {
    use proto::vectors_output::VectorsOptions;
    let dense = |data: Vec<f32>| proto::VectorOutput {
        data,
        ..Default::default()
    };
    let options = match vector {
        VectorOutput::Single(v) => VectorsOptions::Vector(dense(v)),
        VectorOutput::Named(map) => VectorsOptions::Vectors(proto::NamedVectorsOutput {
            vectors: map.into_iter().map(|(k, v)| (k, dense(v))).collect(),
        }),
    };
    proto::VectorsOutput {
        vectors_options: Some(options),
    }
}

pub fn retrieved_point(record: Record) -> proto::RetrievedPoint {
    proto::RetrievedPoint {
        id: Some(point_id_to_grpc(record.id)),
        payload: record.payload.map(payload_to_grpc).unwrap_or_default(),
        vectors: record.vector.map(vectors_to_grpc),
    }
}

pub fn scored_point(point: ScoredPoint) -> proto::ScoredPoint {
    proto::ScoredPoint {
        id: Some(point_id_to_grpc(point.id)),
        payload: point.payload.map(payload_to_grpc).unwrap_or_default(),
        score: point.score,
        version: point.version,
        vectors: point.vector.map(vectors_to_grpc),
    }
}

pub fn scored_points(points: Vec<ScoredPoint>) -> Vec<proto::ScoredPoint> {
    points.into_iter().map(scored_point).collect()
}

pub fn update_result(result: UpdateResult) -> proto::UpdateResult {
    let status = match result.status {
        "completed" => proto::UpdateStatus::Completed,
        "acknowledged" => proto::UpdateStatus::Acknowledged,
        _ => proto::UpdateStatus::UnknownUpdateStatus,
    };
    proto::UpdateResult {
        operation_id: Some(result.operation_id),
        status: status as i32,
    }
}

/// `with_payload`; `default` applies when the message leaves it out.
pub fn with_payload(selector: Option<proto::WithPayloadSelector>, default: bool) -> WithPayload {
    use proto::with_payload_selector::SelectorOptions;
    match selector.and_then(|s| s.selector_options) {
        None => WithPayload::Enable(default),
        Some(SelectorOptions::Enable(on)) => WithPayload::Enable(on),
        Some(SelectorOptions::Include(i)) => {
            WithPayload::Selector(PayloadSelector::Include(i.fields))
        }
        Some(SelectorOptions::Exclude(e)) => {
            WithPayload::Selector(PayloadSelector::Exclude(e.fields))
        }
    }
}

pub fn with_vectors(selector: Option<proto::WithVectorsSelector>) -> WithVector {
    use proto::with_vectors_selector::SelectorOptions;
    match selector.and_then(|s| s.selector_options) {
        None => WithVector::Enable(false),
        Some(SelectorOptions::Enable(on)) => WithVector::Enable(on),
        Some(SelectorOptions::Include(names)) => WithVector::Names(names.names),
    }
}

/// A gRPC filter, validated as the same filter in JSON would be.
pub fn filter(filter: Option<proto::Filter>) -> Result<Option<Filter>> {
    let Some(filter) = filter else {
        return Ok(None);
    };
    let json = filter_json(filter)?;
    serde_json::from_value(json)
        .map(Some)
        .map_err(|e| Error::BadInput(format!("filter: {e}")))
}

fn filter_json(filter: proto::Filter) -> Result<Json> {
    let conditions = |list: Vec<proto::Condition>| -> Result<Json> {
        Ok(Json::Array(
            list.into_iter()
                .map(condition_json)
                .collect::<Result<_>>()?,
        ))
    };
    let mut out = serde_json::Map::new();
    if !filter.must.is_empty() {
        out.insert("must".into(), conditions(filter.must)?);
    }
    if !filter.should.is_empty() {
        out.insert("should".into(), conditions(filter.should)?);
    }
    if !filter.must_not.is_empty() {
        out.insert("must_not".into(), conditions(filter.must_not)?);
    }
    if let Some(min) = filter.min_should {
        out.insert(
            "min_should".into(),
            json!({"conditions": conditions(min.conditions)?, "min_count": min.min_count}),
        );
    }
    Ok(Json::Object(out))
}

fn condition_json(condition: proto::Condition) -> Result<Json> {
    use proto::condition::ConditionOneOf;
    match condition.condition_one_of {
        Some(ConditionOneOf::Field(field)) => field_json(field),
        Some(ConditionOneOf::IsEmpty(c)) => Ok(json!({"is_empty": {"key": c.key}})),
        Some(ConditionOneOf::IsNull(c)) => Ok(json!({"is_null": {"key": c.key}})),
        Some(ConditionOneOf::HasId(c)) => {
            let ids = point_ids(c.has_id)?;
            Ok(json!({ "has_id": ids }))
        }
        Some(ConditionOneOf::Filter(f)) => filter_json(f),
        Some(ConditionOneOf::Nested(n)) => Ok(json!({"nested": {
            "key": n.key,
            "filter": filter_json(n.filter.unwrap_or_default())?,
        }})),
        Some(ConditionOneOf::HasVector(_)) => Err(unsupported("the has_vector condition")),
        None => Err(Error::BadInput("filter condition is empty".into())),
    }
}

fn field_json(field: proto::FieldCondition) -> Result<Json> {
    if field.geo_bounding_box.is_some() || field.geo_radius.is_some() || field.geo_polygon.is_some()
    {
        return Err(unsupported("geo conditions"));
    }
    if field.datetime_range.is_some() {
        return Err(unsupported("datetime_range"));
    }
    if field.is_empty == Some(true) {
        return Ok(json!({"is_empty": {"key": field.key}}));
    }
    if field.is_null == Some(true) {
        return Ok(json!({"is_null": {"key": field.key}}));
    }
    let mut out = serde_json::Map::new();
    out.insert("key".into(), Json::String(field.key));
    if let Some(m) = field.r#match {
        out.insert("match".into(), match_json(m)?);
    }
    if let Some(r) = field.range {
        out.insert("range".into(), bounds([r.lt, r.gt, r.gte, r.lte]));
    }
    if let Some(c) = field.values_count {
        out.insert("values_count".into(), bounds([c.lt, c.gt, c.gte, c.lte]));
    }
    Ok(Json::Object(out))
}

/// `{"lt", "gt", "gte", "lte"}` with the bounds that are set.
fn bounds<T: serde::Serialize>([lt, gt, gte, lte]: [Option<T>; 4]) -> Json {
    let named = [("lt", lt), ("gt", gt), ("gte", gte), ("lte", lte)];
    Json::Object(
        named
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_string(), json!(value?))))
            .collect(),
    )
}

fn match_json(m: proto::Match) -> Result<Json> {
    use proto::r#match::MatchValue;
    match m.match_value {
        Some(MatchValue::Keyword(s)) => Ok(json!({ "value": s })),
        Some(MatchValue::Integer(i)) => Ok(json!({ "value": i })),
        Some(MatchValue::Boolean(b)) => Ok(json!({ "value": b })),
        Some(MatchValue::Text(t)) => Ok(json!({ "text": t })),
        Some(MatchValue::Keywords(k)) => Ok(json!({ "any": k.strings })),
        Some(MatchValue::Integers(i)) => Ok(json!({ "any": i.integers })),
        Some(MatchValue::ExceptIntegers(i)) => Ok(json!({ "except": i.integers })),
        Some(MatchValue::ExceptKeywords(k)) => Ok(json!({ "except": k.strings })),
        Some(MatchValue::Phrase(_)) => Err(unsupported("match phrase")),
        Some(MatchValue::TextAny(_)) => Err(unsupported("match text_any")),
        None => Err(Error::BadInput("match condition is empty".into())),
    }
}

/// `points` (ids) or `filter` of a delete / payload request.
pub fn points_selector(selector: Option<proto::PointsSelector>) -> Result<PointSelector> {
    use proto::points_selector::PointsSelectorOneOf;
    let (ids, filter) = match selector.and_then(|s| s.points_selector_one_of) {
        Some(PointsSelectorOneOf::Points(list)) => (Some(point_ids(list.ids)?), None),
        Some(PointsSelectorOneOf::Filter(f)) => (None, self::filter(Some(f))?),
        None => (None, None),
    };
    crate::node::points::selector(ids, filter)
}

fn search_params(params: Option<proto::SearchParams>) -> Result<(bool, Option<usize>)> {
    let params = params.unwrap_or_default();
    let hnsw_ef = params
        .hnsw_ef
        .map(|ef| to_usize(ef, "params.hnsw_ef"))
        .transpose()?;
    Ok((params.exact.unwrap_or(false), hnsw_ef))
}

/// `Search`: a dense vector, optionally named.
pub fn search_query(request: proto::SearchPoints) -> Result<Query> {
    if request.sparse_indices.is_some() {
        return Err(unsupported("sparse vectors"));
    }
    let (exact, hnsw_ef) = search_params(request.params)?;
    Ok(Query {
        target: QueryTarget::Vector(request.vector),
        using: request.vector_name.unwrap_or_default(),
        filter: filter(request.filter)?,
        limit: to_usize(request.limit, "limit")?,
        offset: to_usize(request.offset.unwrap_or(0), "offset")?,
        score_threshold: request.score_threshold,
        exact,
        hnsw_ef,
        with_payload: with_payload(request.with_payload, false),
        with_vector: with_vectors(request.with_vectors),
    })
}

/// `Query`: nearest to a vector or to a stored point.
pub fn query(request: proto::QueryPoints) -> Result<Query> {
    if !request.prefetch.is_empty() {
        return Err(unsupported("`prefetch`"));
    }
    if request.lookup_from.is_some() {
        return Err(unsupported("`lookup_from`"));
    }
    let target = query_target(request.query)?;
    let (exact, hnsw_ef) = search_params(request.params)?;
    Ok(Query {
        target,
        using: request.using.unwrap_or_default(),
        filter: filter(request.filter)?,
        limit: to_usize(
            request
                .limit
                .unwrap_or(crate::node::points::DEFAULT_LIMIT as u64),
            "limit",
        )?,
        offset: to_usize(request.offset.unwrap_or(0), "offset")?,
        score_threshold: request.score_threshold,
        exact,
        hnsw_ef,
        with_payload: with_payload(request.with_payload, false),
        with_vector: with_vectors(request.with_vectors),
    })
}

fn query_target(query: Option<proto::Query>) -> Result<QueryTarget> {
    use proto::query::Variant;
    use proto::vector_input::Variant as Input;
    let nearest = match query.and_then(|q| q.variant) {
        Some(Variant::Nearest(input)) => input,
        Some(_) => {
            return Err(unsupported(
                "this query kind (shoal answers nearest-neighbour queries)",
            ))
        }
        None => {
            return Err(Error::BadInput(
                "`query` is required: a vector, a point id, or nearest".into(),
            ))
        }
    };
    match nearest.variant {
        Some(Input::Dense(dense)) => Ok(QueryTarget::Vector(dense.data)),
        Some(Input::Id(id)) => Ok(QueryTarget::Point(point_id(Some(id))?)),
        Some(Input::Sparse(_)) => Err(unsupported("sparse vectors")),
        Some(Input::MultiDense(_)) => Err(unsupported("multi-vectors")),
        Some(Input::Document(_) | Input::Image(_) | Input::Object(_)) => {
            Err(unsupported("inference (document, image or object vectors)"))
        }
        None => Err(Error::BadInput("query vector is empty".into())),
    }
}
