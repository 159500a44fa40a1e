//! `qdrant.Points`: each method converts its message, calls the node method the REST
//! route calls, and converts the answer. Defaults follow Qdrant's gRPC API: payloads
//! come back by default from Get and Scroll, not from Search and Query; writes wait only
//! when `wait` is true.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::convert::points as convert;
use super::convert::values::payload_from_grpc;
use super::proto::points_server::Points;
use super::proto::*;
use super::{answer, seconds_since};
use crate::error::Result;
use crate::node::points::{overwrite_payload_op, Query, UpdateResult as NodeUpdate};
use crate::node::Node;
use crate::shard::ops::ShardOp;

pub struct PointsService {
    pub node: Arc<Node>,
}

impl PointsService {
    /// Applies a delete or payload op and answers with its update result.
    async fn write(
        &self,
        start: Instant,
        collection: &str,
        wait: Option<bool>,
        op: Result<ShardOp>,
    ) -> Result<Response<PointsOperationResponse>, Status> {
        answer(async {
            let result = self
                .node
                .update_points(collection, op?, wait.unwrap_or(false))
                .await?;
            Ok(written(result, start))
        })
        .await
    }

    /// Runs one search or query; the answer as gRPC points.
    async fn one_query(&self, collection: &str, query: Result<Query>) -> Result<Vec<ScoredPoint>> {
        let mut results = self.node.query_points(collection, vec![query?]).await?;
        Ok(convert::scored_points(results.pop().unwrap_or_default()))
    }
}

fn written(result: NodeUpdate, start: Instant) -> PointsOperationResponse {
    PointsOperationResponse {
        result: Some(convert::update_result(result)),
        time: seconds_since(start),
    }
}

#[tonic::async_trait]
impl Points for PointsService {
    async fn upsert(
        &self,
        request: Request<UpsertPoints>,
    ) -> Result<Response<PointsOperationResponse>, Status> {
        let start = Instant::now();
        let request = request.into_inner();
        answer(async {
            if request.update_filter.is_some() {
                return Err(super::convert::unsupported("`update_filter`"));
            }
            let records = convert::point_records(request.points)?;
            let wait = request.wait.unwrap_or(false);
            let result = self
                .node
                .upsert_points(&request.collection_name, records, wait)
                .await?;
            Ok(written(result, start))
        })
        .await
    }

    async fn delete(
        &self,
        request: Request<DeletePoints>,
    ) -> Result<Response<PointsOperationResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let op = convert::points_selector(r.points).map(ShardOp::Delete);
        self.write(start, &r.collection_name, r.wait, op).await
    }

    async fn get(&self, request: Request<GetPoints>) -> Result<Response<GetResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        answer(async {
            let ids = convert::point_ids(r.ids)?;
            let with_payload = convert::with_payload(r.with_payload, true);
            let with_vector = convert::with_vectors(r.with_vectors);
            let found = self
                .node
                .retrieve_points(&r.collection_name, ids, with_payload, with_vector)
                .await?;
            Ok(GetResponse {
                result: found.into_iter().map(convert::retrieved_point).collect(),
                time: seconds_since(start),
            })
        })
        .await
    }

    async fn set_payload(
        &self,
        request: Request<SetPayloadPoints>,
    ) -> Result<Response<PointsOperationResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let op = (|| {
            Ok(ShardOp::SetPayload {
                selector: convert::points_selector(r.points_selector)?,
                payload: payload_from_grpc(r.payload)?,
                key: r.key,
            })
        })();
        self.write(start, &r.collection_name, r.wait, op).await
    }

    async fn overwrite_payload(
        &self,
        request: Request<SetPayloadPoints>,
    ) -> Result<Response<PointsOperationResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let op = (|| {
            overwrite_payload_op(
                convert::points_selector(r.points_selector)?,
                payload_from_grpc(r.payload)?,
                r.key,
            )
        })();
        self.write(start, &r.collection_name, r.wait, op).await
    }

    async fn delete_payload(
        &self,
        request: Request<DeletePayloadPoints>,
    ) -> Result<Response<PointsOperationResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let op =
            convert::points_selector(r.points_selector).map(|selector| ShardOp::DeletePayload {
                selector,
                keys: r.keys,
            });
        self.write(start, &r.collection_name, r.wait, op).await
    }

    async fn clear_payload(
        &self,
        request: Request<ClearPayloadPoints>,
    ) -> Result<Response<PointsOperationResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let op =
            convert::points_selector(r.points).map(|selector| ShardOp::ClearPayload { selector });
        self.write(start, &r.collection_name, r.wait, op).await
    }

    async fn search(
        &self,
        request: Request<SearchPoints>,
    ) -> Result<Response<SearchResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        answer(async {
            let name = r.collection_name.clone();
            Ok(SearchResponse {
                result: self.one_query(&name, convert::search_query(r)).await?,
                time: seconds_since(start),
            })
        })
        .await
    }

    async fn search_batch(
        &self,
        request: Request<SearchBatchPoints>,
    ) -> Result<Response<SearchBatchResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        answer(async {
            let queries = r
                .search_points
                .into_iter()
                .map(convert::search_query)
                .collect::<Result<Vec<_>>>()?;
            let results = self.node.query_points(&r.collection_name, queries).await?;
            Ok(SearchBatchResponse {
                result: results
                    .into_iter()
                    .map(|points| BatchResult {
                        result: convert::scored_points(points),
                    })
                    .collect(),
                time: seconds_since(start),
            })
        })
        .await
    }

    async fn scroll(
        &self,
        request: Request<ScrollPoints>,
    ) -> Result<Response<ScrollResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        answer(async {
            if r.order_by.is_some() {
                return Err(super::convert::unsupported("`order_by`"));
            }
            let offset = r.offset.map(|id| convert::point_id(Some(id))).transpose()?;
            let page = self
                .node
                .scroll_points(
                    &r.collection_name,
                    convert::filter(r.filter)?,
                    offset,
                    r.limit.map(|l| l as usize),
                    convert::with_payload(r.with_payload, true),
                    convert::with_vectors(r.with_vectors),
                )
                .await?;
            Ok(ScrollResponse {
                next_page_offset: page.next_page_offset.map(convert::point_id_to_grpc),
                result: page
                    .points
                    .into_iter()
                    .map(convert::retrieved_point)
                    .collect(),
                time: seconds_since(start),
            })
        })
        .await
    }

    async fn count(
        &self,
        request: Request<CountPoints>,
    ) -> Result<Response<CountResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        answer(async {
            let count = self
                .node
                .count_points(&r.collection_name, convert::filter(r.filter)?)
                .await?;
            Ok(CountResponse {
                result: Some(CountResult {
                    count: count as u64,
                }),
                time: seconds_since(start),
            })
        })
        .await
    }

    async fn query(
        &self,
        request: Request<QueryPoints>,
    ) -> Result<Response<QueryResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        answer(async {
            let name = r.collection_name.clone();
            Ok(QueryResponse {
                result: self.one_query(&name, convert::query(r)).await?,
                time: seconds_since(start),
            })
        })
        .await
    }
}
