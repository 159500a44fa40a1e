//! Point operations: writes go to the replicas of the points' shards (not through Raft),
//! reads and searches ask one replica of every shard concerned and merge the answers
//! (see `replicas.rs`; local shards are used on blocking threads).

use serde::Serialize;

use super::read_limits::{ReadLimits, Window};
use super::{blocking, Node};
use crate::collection::point::{
    NamedVectors, PointRecord, Record, ScoredPoint, WithPayload, WithVector,
};
use crate::collection::{merge, Collection, SearchParams};
use crate::error::{Error, Result};
use crate::replication::wire::{SearchSpec, ShardRead};
use crate::shard::filter::Filter;
use crate::shard::ops::{PointSelector, ShardOp};
use crate::types::PointId;

/// `limit` of a query or scroll that leaves it out (Qdrant's default).
pub const DEFAULT_LIMIT: usize = 10;

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
        let ops = {
            let collection = collection.clone();
            blocking(move || {
                for point in &points {
                    collection.validate_vectors(&point.vectors)?;
                }
                Ok(collection.split_upsert(points))
            })
            .await?
        };
        let operation_id = self.write_shards(&collection, ops, wait).await?;
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
        let ops = collection.split_by_shard(op);
        let operation_id = self.write_shards(&collection, ops, wait).await?;
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
        let reads = collection
            .split_ids(&ids)
            .into_iter()
            .map(|(shard, ids)| {
                let read = ShardRead::Retrieve {
                    ids,
                    with_payload: with_payload.clone(),
                    with_vector: with_vector.clone(),
                };
                (shard, read)
            })
            .collect();
        let mut found = Vec::new();
        for answer in self.read_shards(&collection, reads).await? {
            found.extend(answer.into_records()?);
        }
        Ok(merge::retrieve(&ids, found))
    }

    /// One page of points in id order; `limit` defaults to [`DEFAULT_LIMIT`].
    pub async fn scroll_points(
        &self,
        collection: &str,
        filter: Option<Filter>,
        offset: Option<PointId>,
        limit: Option<usize>,
        with_payload: WithPayload,
        with_vector: WithVector,
    ) -> Result<ScrollPage> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 {
            return Err(Error::BadInput("limit: must be 1 or more".into()));
        }
        self.read_limits().check_scroll(limit)?;
        let collection = self.collection(collection)?;
        let reads = collection
            .shard_ids()
            .map(|shard| {
                let read = ShardRead::Scroll {
                    filter: filter.clone(),
                    offset,
                    limit: limit.saturating_add(1),
                    with_payload: with_payload.clone(),
                    with_vector: with_vector.clone(),
                };
                (shard, read)
            })
            .collect();
        let mut records = Vec::new();
        for answer in self.read_shards(&collection, reads).await? {
            records.extend(answer.into_records()?);
        }
        let (points, next_page_offset) = merge::scroll(records, limit);
        Ok(ScrollPage {
            points,
            next_page_offset,
        })
    }

    pub async fn count_points(&self, collection: &str, filter: Option<Filter>) -> Result<usize> {
        let collection = self.collection(collection)?;
        let reads = collection
            .shard_ids()
            .map(|shard| {
                let read = ShardRead::Count {
                    filter: filter.clone(),
                };
                (shard, read)
            })
            .collect();
        let mut total = 0;
        for answer in self.read_shards(&collection, reads).await? {
            total += answer.into_count()?;
        }
        Ok(total)
    }

    /// Runs several queries against one collection, one after the other; each asks every
    /// shard once.
    pub async fn query_points(
        &self,
        collection: &str,
        queries: Vec<Query>,
    ) -> Result<Vec<Vec<ScoredPoint>>> {
        let collection = self.collection(collection)?;
        let windows: Vec<Window> = queries
            .iter()
            .map(|q| Window {
                limit: q.limit,
                offset: q.offset,
            })
            .collect();
        self.read_limits()
            .check_batch(&windows, collection.points_upper_bound())?;
        let mut answers = Vec::with_capacity(queries.len());
        for query in queries {
            answers.push(self.run_query(&collection, query).await?);
        }
        Ok(answers)
    }

    async fn run_query(&self, collection: &Collection, query: Query) -> Result<Vec<ScoredPoint>> {
        let (vector, exclude) = match query.target {
            QueryTarget::Vector(v) => (v, None),
            QueryTarget::Point(id) => {
                let vectors = self
                    .point_vectors(collection, id)
                    .await?
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
            limit: query.limit.saturating_add(extra),
            offset: query.offset,
            score_threshold: query.score_threshold,
            exact: query.exact,
            hnsw_ef: query.hnsw_ef,
            with_payload: query.with_payload,
            with_vector: query.with_vector,
        };
        let (request, distance) = collection.search_request(&params)?;
        let spec = SearchSpec::from(request);
        let reads = collection
            .shard_ids()
            .map(|shard| (shard, ShardRead::Search(spec.clone())))
            .collect();
        let mut hits = Vec::new();
        for answer in self.read_shards(collection, reads).await? {
            hits.extend(answer.into_hits()?);
        }
        let mut hits = merge::search(hits, distance, params.offset, params.limit);
        if let Some(id) = exclude {
            hits.retain(|hit| hit.id != id);
        }
        hits.truncate(query.limit);
        // A peer's answer is input too: a score that overflowed is refused, not sent.
        if hits.iter().any(|hit| !hit.score.is_finite()) {
            return Err(crate::collection::score_overflow());
        }
        Ok(hits)
    }

    /// The bounds on read requests configured for this node.
    fn read_limits(&self) -> ReadLimits {
        ReadLimits::from_settings(&self.settings.service)
    }

    /// Every stored vector of one point, from its shard.
    async fn point_vectors(
        &self,
        collection: &Collection,
        id: PointId,
    ) -> Result<Option<NamedVectors>> {
        let shard = collection.shard_of(&id);
        self.read_shard(collection, shard, ShardRead::GetVectors { id })
            .await?
            .into_vectors()
    }
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

/// The op of an overwrite-payload request; Qdrant's `key` is not allowed with it.
pub fn overwrite_payload_op(
    selector: PointSelector,
    payload: crate::collection::point::Payload,
    key: Option<String>,
) -> Result<ShardOp> {
    if key.is_some() {
        return Err(Error::BadInput(
            "`key` is not allowed when overwriting a payload".into(),
        ));
    }
    Ok(ShardOp::OverwritePayload { selector, payload })
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
