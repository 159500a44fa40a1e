//! Search routes: `/points/search`, `/points/search/batch`, `/points/query` and
//! `/points/query/batch`. They turn Qdrant's request shapes into [`Query`] values; the
//! node runs them.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::envelope::Success;
use super::error::ApiResult;
use super::extract::{Json, Path};
use crate::collection::point::{ScoredPoint, WithPayload, WithVector};
use crate::error::{Error, Result};
use crate::node::points::{Query, QueryTarget, DEFAULT_LIMIT};
use crate::node::Node;
use crate::shard::filter::Filter;
use crate::types::{PointId, DEFAULT_VECTOR};

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/collections/{name}/points/search", post(search))
        .route(
            "/collections/{name}/points/search/batch",
            post(search_batch),
        )
        .route("/collections/{name}/points/query", post(query))
        .route("/collections/{name}/points/query/batch", post(query_batch))
}

#[derive(Deserialize, Default)]
struct SearchParamsBody {
    hnsw_ef: Option<usize>,
    #[serde(default)]
    exact: bool,
}

/// `vector` of a search: a bare list, or `{"name": .., "vector": [..]}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum SearchVector {
    Plain(Vec<f32>),
    Named { name: String, vector: Vec<f32> },
}

#[derive(Deserialize)]
struct SearchBody {
    vector: SearchVector,
    filter: Option<Filter>,
    params: Option<SearchParamsBody>,
    limit: usize,
    offset: Option<usize>,
    #[serde(default)]
    with_payload: WithPayload,
    #[serde(default, alias = "with_vectors")]
    with_vector: WithVector,
    score_threshold: Option<f32>,
}

impl SearchBody {
    fn into_query(self) -> Query {
        let (using, vector) = match self.vector {
            SearchVector::Plain(v) => (DEFAULT_VECTOR.to_string(), v),
            SearchVector::Named { name, vector } => (name, vector),
        };
        let params = self.params.unwrap_or_default();
        Query {
            target: QueryTarget::Vector(vector),
            using,
            filter: self.filter,
            limit: self.limit,
            offset: self.offset.unwrap_or(0),
            score_threshold: self.score_threshold,
            exact: params.exact,
            hnsw_ef: params.hnsw_ef,
            with_payload: self.with_payload,
            with_vector: self.with_vector,
        }
    }
}

async fn search(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Json(body): Json<SearchBody>,
) -> ApiResult<Success<Vec<ScoredPoint>>> {
    let mut results = node.query_points(&name, vec![body.into_query()]).await?;
    Ok(Success(results.pop().unwrap_or_default()))
}

#[derive(Deserialize)]
struct SearchBatchBody {
    searches: Vec<SearchBody>,
}

async fn search_batch(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Json(body): Json<SearchBatchBody>,
) -> ApiResult<Success<Vec<Vec<ScoredPoint>>>> {
    let queries = body
        .searches
        .into_iter()
        .map(SearchBody::into_query)
        .collect();
    Ok(Success(node.query_points(&name, queries).await?))
}

#[derive(Deserialize)]
struct QueryBody {
    query: Option<Value>,
    using: Option<String>,
    filter: Option<Filter>,
    params: Option<SearchParamsBody>,
    limit: Option<usize>,
    offset: Option<usize>,
    #[serde(default)]
    with_payload: WithPayload,
    #[serde(default, alias = "with_vectors")]
    with_vector: WithVector,
    score_threshold: Option<f32>,
    prefetch: Option<Value>,
    lookup_from: Option<Value>,
}

impl QueryBody {
    fn into_query(self) -> Result<Query> {
        if self
            .prefetch
            .as_ref()
            .is_some_and(|p| !p.is_null() && p != &json!([]))
        {
            return Err(Error::BadInput(
                "`prefetch` is not supported by shoal".into(),
            ));
        }
        if self.lookup_from.as_ref().is_some_and(|l| !l.is_null()) {
            return Err(Error::BadInput(
                "`lookup_from` is not supported by shoal".into(),
            ));
        }
        let query = self.query.filter(|q| !q.is_null()).ok_or_else(|| {
            Error::BadInput(
                "`query` is required: a vector, a point id, or {\"nearest\": ...}".into(),
            )
        })?;
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        let params = self.params.unwrap_or_default();
        Ok(Query {
            target: parse_target(query)?,
            using: self.using.unwrap_or_default(),
            filter: self.filter,
            limit,
            offset: self.offset.unwrap_or(0),
            score_threshold: self.score_threshold,
            exact: params.exact,
            hnsw_ef: params.hnsw_ef,
            with_payload: self.with_payload,
            with_vector: self.with_vector,
        })
    }
}

/// `query`: a vector, a point id, or `{"nearest": <vector or id>}`.
fn parse_target(query: Value) -> Result<QueryTarget> {
    match query {
        Value::Array(_) => serde_json::from_value::<Vec<f32>>(query)
            .map(QueryTarget::Vector)
            .map_err(|e| Error::BadInput(format!("query vector: {e}"))),
        Value::Number(_) | Value::String(_) => serde_json::from_value::<PointId>(query)
            .map(QueryTarget::Point)
            .map_err(|e| Error::BadInput(format!("query: {e}"))),
        Value::Object(mut map) => match map.remove("nearest") {
            Some(nearest) if map.is_empty() => parse_target(nearest),
            _ => {
                let kinds: Vec<_> = map.keys().cloned().collect();
                Err(Error::BadInput(format!("query kind {kinds:?} is not supported by shoal; use a vector, a point id or `nearest`")))
            }
        },
        other => Err(Error::BadInput(format!(
            "query must be a vector, a point id or an object, got {other}"
        ))),
    }
}

#[derive(serde::Serialize)]
struct QueryResponse {
    points: Vec<ScoredPoint>,
}

async fn query(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Json(body): Json<QueryBody>,
) -> ApiResult<Success<QueryResponse>> {
    let mut results = node.query_points(&name, vec![body.into_query()?]).await?;
    Ok(Success(QueryResponse {
        points: results.pop().unwrap_or_default(),
    }))
}

#[derive(Deserialize)]
struct QueryBatchBody {
    searches: Vec<QueryBody>,
}

async fn query_batch(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Json(body): Json<QueryBatchBody>,
) -> ApiResult<Success<Vec<QueryResponse>>> {
    let queries = body
        .searches
        .into_iter()
        .map(QueryBody::into_query)
        .collect::<Result<Vec<_>>>()?;
    let results = node.query_points(&name, queries).await?;
    Ok(Success(
        results
            .into_iter()
            .map(|points| QueryResponse { points })
            .collect(),
    ))
}
