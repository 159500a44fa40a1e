//! Collection and alias routes: create, get, list, exists, update, delete; alias actions.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use super::envelope::Success;
use super::error::ApiResult;
use super::extract::{Json, Path};
use crate::collection::config::{CreateCollection, UpdateCollection};
use crate::consensus::op::AliasAction;
use crate::node::Node;

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/collections", get(list))
        .route("/collections/aliases", post(update_aliases))
        .route(
            "/collections/{name}",
            get(info).put(create).patch(update).delete(delete),
        )
        .route("/collections/{name}/exists", get(exists))
        .route("/collections/{name}/aliases", get(collection_aliases))
        .route("/aliases", get(all_aliases))
}

async fn list(State(node): State<Arc<Node>>) -> Success<serde_json::Value> {
    let collections: Vec<_> = node
        .list_collections()
        .into_iter()
        .map(|name| json!({"name": name}))
        .collect();
    Success(json!({"collections": collections}))
}

async fn create(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Json(body): Json<CreateCollection>,
) -> ApiResult<Success<bool>> {
    node.create_collection(&name, body).await?;
    Ok(Success(true))
}

async fn info(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> ApiResult<Success<crate::node::collections::CollectionInfo>> {
    Ok(Success(node.collection_info(&name).await?))
}

async fn update(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Json(body): Json<UpdateCollection>,
) -> ApiResult<Success<bool>> {
    node.update_collection(&name, body).await?;
    Ok(Success(true))
}

async fn delete(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> ApiResult<Success<bool>> {
    Ok(Success(node.delete_collection(&name).await?))
}

async fn exists(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> Success<serde_json::Value> {
    Success(json!({"exists": node.collection_exists(&name)}))
}

#[derive(Deserialize)]
struct AliasActions {
    actions: Vec<AliasAction>,
}

async fn update_aliases(
    State(node): State<Arc<Node>>,
    Json(body): Json<AliasActions>,
) -> ApiResult<Success<bool>> {
    node.update_aliases(body.actions).await?;
    Ok(Success(true))
}

async fn all_aliases(State(node): State<Arc<Node>>) -> ApiResult<Success<serde_json::Value>> {
    Ok(Success(json!({"aliases": node.list_aliases(None)?})))
}

async fn collection_aliases(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> ApiResult<Success<serde_json::Value>> {
    Ok(Success(json!({"aliases": node.list_aliases(Some(&name))?})))
}
