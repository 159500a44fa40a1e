//! Point routes: upsert (list and batch forms), retrieve, delete, payload changes,
//! scroll and count.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use super::envelope::Success;
use super::error::ApiResult;
use super::extract::{Json, Path, Query, WaitParam};
use crate::collection::point::{
    Payload, PointRecord, PointStruct, Record, WithPayload, WithVector,
};
use crate::error::Error;
use crate::node::points::{overwrite_payload_op, selector, ScrollPage, UpdateResult};
use crate::node::Node;
use crate::shard::filter::Filter;
use crate::shard::ops::ShardOp;
use crate::types::PointId;

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/collections/{name}/points", post(retrieve).put(upsert))
        .route("/collections/{name}/points/{id}", get(get_point))
        .route("/collections/{name}/points/delete", post(delete))
        .route(
            "/collections/{name}/points/payload",
            post(set_payload).put(overwrite_payload),
        )
        .route(
            "/collections/{name}/points/payload/delete",
            post(delete_payload),
        )
        .route(
            "/collections/{name}/points/payload/clear",
            post(clear_payload),
        )
        .route("/collections/{name}/points/scroll", post(scroll))
        .route("/collections/{name}/points/count", post(count))
}

/// `{"points": [...]}` or `{"batch": {"ids", "vectors", "payloads"}}`.
#[derive(Deserialize)]
struct UpsertBody {
    points: Option<Vec<PointStruct>>,
    batch: Option<Batch>,
}

#[derive(Deserialize)]
struct Batch {
    ids: Vec<PointId>,
    vectors: BatchVectors,
    payloads: Option<Vec<Option<Payload>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BatchVectors {
    Single(Vec<Vec<f32>>),
    Named(BTreeMap<String, Vec<Vec<f32>>>),
}

impl UpsertBody {
    fn into_records(self) -> Result<Vec<PointRecord>, Error> {
        match (self.points, self.batch) {
            (Some(points), None) => Ok(points
                .into_iter()
                .map(|p| PointRecord {
                    id: p.id,
                    vectors: p.vector.into_named(),
                    payload: p.payload.unwrap_or_default(),
                })
                .collect()),
            (None, Some(batch)) => batch.into_records(),
            _ => Err(Error::BadInput(
                "upsert body needs exactly one of `points` or `batch`".into(),
            )),
        }
    }
}

impl Batch {
    fn into_records(self) -> Result<Vec<PointRecord>, Error> {
        let n = self.ids.len();
        let mut vectors: Vec<BTreeMap<String, Vec<f32>>> = vec![BTreeMap::new(); n];
        let columns = match self.vectors {
            BatchVectors::Single(list) => BTreeMap::from([(String::new(), list)]),
            BatchVectors::Named(map) => map,
        };
        for (name, column) in columns {
            if column.len() != n {
                return Err(Error::BadInput(format!(
                    "batch has {n} ids but {} vectors{}",
                    column.len(),
                    if name.is_empty() {
                        String::new()
                    } else {
                        format!(" named `{name}`")
                    }
                )));
            }
            for (slot, vector) in vectors.iter_mut().zip(column) {
                slot.insert(name.clone(), vector);
            }
        }
        let payloads = self.payloads.unwrap_or_else(|| vec![None; n]);
        if payloads.len() != n {
            return Err(Error::BadInput(format!(
                "batch has {n} ids but {} payloads",
                payloads.len()
            )));
        }
        Ok(self
            .ids
            .into_iter()
            .zip(vectors)
            .zip(payloads)
            .map(|((id, vectors), payload)| PointRecord {
                id,
                vectors,
                payload: payload.unwrap_or_default(),
            })
            .collect())
    }
}

async fn upsert(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Query(q): Query<WaitParam>,
    Json(body): Json<UpsertBody>,
) -> ApiResult<Success<UpdateResult>> {
    let records = body.into_records()?;
    Ok(Success(node.upsert_points(&name, records, q.wait).await?))
}

#[derive(Deserialize)]
struct RetrieveBody {
    ids: Vec<PointId>,
    #[serde(default = "payload_on")]
    with_payload: WithPayload,
    #[serde(default, alias = "with_vectors")]
    with_vector: WithVector,
}

fn payload_on() -> WithPayload {
    WithPayload::Enable(true)
}

async fn retrieve(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Json(body): Json<RetrieveBody>,
) -> ApiResult<Success<Vec<Record>>> {
    Ok(Success(
        node.retrieve_points(&name, body.ids, body.with_payload, body.with_vector)
            .await?,
    ))
}

async fn get_point(
    State(node): State<Arc<Node>>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Success<Record>> {
    let id: PointId = id.parse().map_err(Error::BadInput)?;
    let found = node
        .retrieve_points(
            &name,
            vec![id],
            WithPayload::Enable(true),
            WithVector::Enable(true),
        )
        .await?;
    let record = found
        .into_iter()
        .next()
        .ok_or_else(|| Error::NotFound(format!("No point with id {id} found")))?;
    Ok(Success(record))
}

/// The `points` / `filter` alternatives shared by delete and payload bodies.
#[derive(Deserialize)]
struct Selection {
    points: Option<Vec<PointId>>,
    filter: Option<Filter>,
}

async fn delete(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Query(q): Query<WaitParam>,
    Json(body): Json<Selection>,
) -> ApiResult<Success<UpdateResult>> {
    let op = ShardOp::Delete(selector(body.points, body.filter)?);
    Ok(Success(node.update_points(&name, op, q.wait).await?))
}

#[derive(Deserialize)]
struct SetPayloadBody {
    payload: Payload,
    points: Option<Vec<PointId>>,
    filter: Option<Filter>,
    key: Option<String>,
}

async fn set_payload(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Query(q): Query<WaitParam>,
    Json(body): Json<SetPayloadBody>,
) -> ApiResult<Success<UpdateResult>> {
    let op = ShardOp::SetPayload {
        selector: selector(body.points, body.filter)?,
        payload: body.payload,
        key: body.key,
    };
    Ok(Success(node.update_points(&name, op, q.wait).await?))
}

async fn overwrite_payload(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Query(q): Query<WaitParam>,
    Json(body): Json<SetPayloadBody>,
) -> ApiResult<Success<UpdateResult>> {
    let op = overwrite_payload_op(selector(body.points, body.filter)?, body.payload, body.key)?;
    Ok(Success(node.update_points(&name, op, q.wait).await?))
}

#[derive(Deserialize)]
struct DeletePayloadBody {
    keys: Vec<String>,
    points: Option<Vec<PointId>>,
    filter: Option<Filter>,
}

async fn delete_payload(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Query(q): Query<WaitParam>,
    Json(body): Json<DeletePayloadBody>,
) -> ApiResult<Success<UpdateResult>> {
    let op = ShardOp::DeletePayload {
        selector: selector(body.points, body.filter)?,
        keys: body.keys,
    };
    Ok(Success(node.update_points(&name, op, q.wait).await?))
}

async fn clear_payload(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Query(q): Query<WaitParam>,
    Json(body): Json<Selection>,
) -> ApiResult<Success<UpdateResult>> {
    let op = ShardOp::ClearPayload {
        selector: selector(body.points, body.filter)?,
    };
    Ok(Success(node.update_points(&name, op, q.wait).await?))
}

#[derive(Deserialize)]
struct ScrollBody {
    filter: Option<Filter>,
    limit: Option<usize>,
    offset: Option<PointId>,
    #[serde(default = "payload_on")]
    with_payload: WithPayload,
    #[serde(default, alias = "with_vectors")]
    with_vector: WithVector,
}

async fn scroll(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Json(body): Json<ScrollBody>,
) -> ApiResult<Success<ScrollPage>> {
    let page = node
        .scroll_points(
            &name,
            body.filter,
            body.offset,
            body.limit,
            body.with_payload,
            body.with_vector,
        )
        .await?;
    Ok(Success(page))
}

#[derive(Deserialize)]
struct CountBody {
    filter: Option<Filter>,
    /// Counts are always exact in shoal; the flag is accepted for compatibility.
    #[allow(dead_code)]
    exact: Option<bool>,
}

async fn count(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Json(body): Json<CountBody>,
) -> ApiResult<Success<serde_json::Value>> {
    let count = node.count_points(&name, body.filter).await?;
    Ok(Success(json!({"count": count})))
}
