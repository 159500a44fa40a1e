//! Point operations: writes go to the collection's shards (not through Raft); reads and
//! searches run on blocking threads because they scan vectors and touch files.

use serde::Serialize;

use super::{blocking, Node};
use crate::collection::point::{
    NamedVectors, PointRecord, Record, ScoredPoint, WithPayload, WithVector,
};
use crate::collection::{Collection, SearchParams};
use crate::error::{Error, Result};
use crate::shard::filter::Filter;
use crate::shard::ops::{PointSelector, ShardOp};
use crate::types::PointId;

/// Result of a write, in Qdrant's `UpdateResult` shape.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UpdateResult {
    pub operation_id: u64,
    /// `completed` once durable (`wait=true`), `acknowledged` once written to the
    /// WAL without waiting for fsync (`wait=false`).
    pub status: &'static str,
}

/// What a query is the nearest neighbours of.
#[derive(Debug, Clone)]
pub enum QueryTarget {
    Vector(Vec<f32>),
    /// Nearest to a stored point's vector; the point itself is left out of the results.
    Point(PointId),
}

/// A resolved `POST /points/query` or `/points/search` request.
#[derive(Debug, Clone)]
pub struct Query {
    pub target: QueryTarget,
    pub using: String,
    pub filter: Option<Filter>,
    pub limit: usize,
    pub offset: usize,
    pub score_threshold: Option<f32>,
    pub exact: bool,
    pub hnsw_ef: Option<usize>,
    pub with_payload: WithPayload,
    pub with_vector: WithVector,
}

/// One page of `scroll`.
#[derive(Debug, Clone, Serialize)]
pub struct ScrollPage {
    pub points: Vec<Record>,
    pub next_page_offset: Option<PointId>,
}

impl Node {
    pub async fn upsert_points(
        &self,
        collection: &str,
        points: Vec<PointRecord>,
        wait: bool,
    ) -> Result<UpdateResult> {
        let collection = self.collection(collection)?;
        let operation_id = blocking(move || collection.upsert(points, wait)).await?;
        Ok(update_result(operation_id, wait))
    }

    /// Deletes or changes payloads of the selected points.
    pub async fn update_points(
        &self,
        collection: &str,
        op: ShardOp,
        wait: bool,
    ) -> Result<UpdateResult> {
        let collection = self.collection(collection)?;
        let operation_id = blocking(move || collection.update(op, wait)).await?;
        Ok(update_result(operation_id, wait))
    }

    pub async fn retrieve_points(
        &self,
        collection: &str,
        ids: Vec<PointId>,
        with_payload: WithPayload,
        with_vector: WithVector,
    ) -> Result<Vec<Record>> {
        let collection = self.collection(collection)?;
        blocking(move || Ok(collection.retrieve(&ids, &with_payload, &with_vector))).await
    }

    pub async fn scroll_points(
        &self,
        collection: &str,
        filter: Option<Filter>,
        offset: Option<PointId>,
        limit: usize,
        with_payload: WithPayload,
        with_vector: WithVector,
    ) -> Result<ScrollPage> {
        let collection = self.collection(collection)?;
        blocking(move || {
            let (points, next_page_offset) =
                collection.scroll(filter.as_ref(), offset, limit, &with_payload, &with_vector);
            Ok(ScrollPage {
                points,
                next_page_offset,
            })
        })
        .await
    }

    pub async fn count_points(&self, collection: &str, filter: Option<Filter>) -> Result<usize> {
        let collection = self.collection(collection)?;
        blocking(move || Ok(collection.count(filter.as_ref()))).await
    }

    /// Runs several queries against one collection; one blocking task for the batch.
    pub async fn query_points(
        &self,
        collection: &str,
        queries: Vec<Query>,
    ) -> Result<Vec<Vec<ScoredPoint>>> {
        let collection = self.collection(collection)?;
        blocking(move || {
            queries
                .into_iter()
                .map(|q| run_query(&collection, q))
                .collect()
        })
        .await
    }
}

fn run_query(collection: &Collection, query: Query) -> Result<Vec<ScoredPoint>> {
    let (vector, exclude) = match query.target {
        QueryTarget::Vector(v) => (v, None),
        QueryTarget::Point(id) => {
            let vectors = collection
                .get_vectors(id)
                .ok_or_else(|| Error::NotFound(format!("No point with id {id} found")))?;
            (vector_named(vectors, &query.using, id)?, Some(id))
        }
    };
    // Ask for one more when the query point itself may come back, then drop it.
    let extra = usize::from(exclude.is_some());
    let params = SearchParams {
        vector_name: query.using,
        vector,
        filter: query.filter,
        limit: query.limit + extra,
        offset: query.offset,
        score_threshold: query.score_threshold,
        exact: query.exact,
        hnsw_ef: query.hnsw_ef,
        with_payload: query.with_payload,
        with_vector: query.with_vector,
    };
    let mut hits = collection.search(&params)?;
    if let Some(id) = exclude {
        hits.retain(|hit| hit.id != id);
    }
    hits.truncate(query.limit);
    Ok(hits)
}

fn vector_named(mut vectors: NamedVectors, name: &str, id: PointId) -> Result<Vec<f32>> {
    vectors
        .remove(name)
        .ok_or_else(|| Error::BadInput(format!("point {id} has no vector named `{name}`")))
}

fn update_result(operation_id: u64, wait: bool) -> UpdateResult {
    UpdateResult {
        operation_id,
        status: if wait { "completed" } else { "acknowledged" },
    }
}

/// Builds the selector of a points op from Qdrant's `points` / `filter` alternatives.
pub fn selector(points: Option<Vec<PointId>>, filter: Option<Filter>) -> Result<PointSelector> {
    match (points, filter) {
        (Some(ids), None) => Ok(PointSelector::Ids(ids)),
        (None, Some(filter)) => Ok(PointSelector::Filter(filter)),
        (Some(_), Some(_)) => Err(Error::BadInput(
            "give either `points` or `filter`, not both".into(),
        )),
        (None, None) => Err(Error::BadInput(
            "give either `points` (ids) or `filter` to select points".into(),
        )),
    }
}
