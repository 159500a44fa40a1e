//! Cluster routes: the cluster's status as this peer sees it, removing a peer, and where
//! a collection's shard replicas are.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{delete, get};
use axum::Router;
use serde::Deserialize;

use super::envelope::Success;
use super::error::ApiResult;
use super::extract::{Json, Path, Query};
use crate::node::cluster::ClusterStatus;
use crate::node::collections::CollectionClusterInfo;
use crate::node::transfers::ClusterOperation;
use crate::node::Node;
use crate::types::PeerId;

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/cluster", get(status))
        .route("/cluster/peer/{peer_id}", delete(remove_peer))
        .route(
            "/collections/{name}/cluster",
            get(collection_cluster).post(update_collection_cluster),
        )
}

async fn update_collection_cluster(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Json(operation): Json<ClusterOperation>,
) -> ApiResult<Success<bool>> {
    node.update_collection_cluster(&name, operation).await?;
    Ok(Success(true))
}

async fn collection_cluster(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> ApiResult<Success<CollectionClusterInfo>> {
    Ok(Success(node.collection_cluster_info(&name).await?))
}

async fn status(State(node): State<Arc<Node>>) -> Success<ClusterStatus> {
    Success(node.cluster_status())
}

#[derive(Deserialize)]
struct RemovePeerParams {
    #[serde(default)]
    force: bool,
}

async fn remove_peer(
    State(node): State<Arc<Node>>,
    Path(peer_id): Path<PeerId>,
    Query(params): Query<RemovePeerParams>,
) -> ApiResult<Success<bool>> {
    node.remove_peer(peer_id, params.force).await?;
    Ok(Success(true))
}
