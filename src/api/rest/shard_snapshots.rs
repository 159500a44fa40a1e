//! Shard snapshot routes: `/collections/{c}/shards/{id}/snapshots[...]` and the streamed
//! `/collections/{c}/shards/{id}/snapshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde::Deserialize;

use super::envelope::{recovery_answer, task_answer, Success};
use super::error::ApiResult;
use super::extract::{default_true, Json, Path, Query, WaitParam};
use super::snapshots::{recover_from_upload, serve_file};
use crate::node::snapshots::{RecoverRequest, SnapshotPriority};
use crate::node::tasks::finish_or_accept;
use crate::node::Node;
use crate::snapshot::archive::FileCheck;
use crate::types::ShardId;

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route(
            "/collections/{name}/shards/{shard}/snapshots",
            get(list).post(create),
        )
        .route(
            "/collections/{name}/shards/{shard}/snapshots/recover",
            put(recover),
        )
        .route(
            "/collections/{name}/shards/{shard}/snapshots/upload",
            post(upload_and_recover).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/collections/{name}/shards/{shard}/snapshots/{snapshot}",
            get(download).delete(delete),
        )
        .route("/collections/{name}/shards/{shard}/snapshot", get(stream))
}

async fn list(
    State(node): State<Arc<Node>>,
    Path((name, shard)): Path<(String, ShardId)>,
) -> ApiResult<Response> {
    Ok(Success(node.list_shard_snapshots(&name, shard)?).into_response())
}

async fn create(
    State(node): State<Arc<Node>>,
    Path((name, shard)): Path<(String, ShardId)>,
    Query(q): Query<WaitParam>,
) -> ApiResult<Response> {
    node.list_shard_snapshots(&name, shard)?;
    let target = format!("{name}/shards/{shard}");
    let outcome = node
        .run_task(
            "create_shard_snapshot",
            &target,
            q.wait,
            |node, task| async move { node.create_shard_snapshot(&name, shard, &task).await },
        )
        .await?;
    Ok(task_answer(outcome))
}

async fn delete(
    State(node): State<Arc<Node>>,
    Path((name, shard, snapshot)): Path<(String, ShardId, String)>,
    Query(q): Query<WaitParam>,
) -> ApiResult<Response> {
    let target = format!("{name}/shards/{shard}/{snapshot}");
    let outcome = node
        .run_task(
            "delete_shard_snapshot",
            &target,
            q.wait,
            |node, _| async move {
                node.delete_shard_snapshot(&name, shard, &snapshot)
                    .map(|()| true)
            },
        )
        .await?;
    Ok(task_answer(outcome))
}

async fn download(
    State(node): State<Arc<Node>>,
    Path((name, shard, snapshot)): Path<(String, ShardId, String)>,
    request: Request,
) -> ApiResult<Response> {
    let path = node.shard_snapshot_path(&name, shard, &snapshot)?;
    serve_file(path, &snapshot, request).await
}

async fn stream(
    State(node): State<Arc<Node>>,
    Path((name, shard)): Path<(String, ShardId)>,
) -> ApiResult<Response> {
    let (file_name, chunks) = node.stream_shard_snapshot(&name, shard, FileCheck::Sha256)?;
    let body = Body::from_stream(tokio_stream_of(chunks));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        body,
    )
        .into_response())
}

fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[derive(Deserialize)]
struct RecoverBody {
    location: String,
    priority: Option<SnapshotPriority>,
    checksum: Option<String>,
    api_key: Option<String>,
}

async fn recover(
    State(node): State<Arc<Node>>,
    Path((name, shard)): Path<(String, ShardId)>,
    Query(q): Query<WaitParam>,
    Json(body): Json<RecoverBody>,
) -> ApiResult<Response> {
    let request = RecoverRequest {
        priority: body.priority.unwrap_or_default(),
        checksum: body.checksum,
        api_key: body.api_key,
    };
    let target = format!("{name}/shards/{shard}");
    let outcome = node
        .run_task(
            "recover_shard_snapshot",
            &target,
            q.wait,
            |node, task| async move {
                node.recover_shard(&name, shard, &body.location, request, &task)
                    .await
            },
        )
        .await?;
    Ok(recovery_answer(true.into(), outcome))
}

#[derive(Deserialize)]
struct UploadQuery {
    #[serde(default = "default_true")]
    wait: bool,
    priority: Option<SnapshotPriority>,
    checksum: Option<String>,
}

async fn upload_and_recover(
    State(node): State<Arc<Node>>,
    Path((name, shard)): Path<(String, ShardId)>,
    Query(q): Query<UploadQuery>,
    mut multipart: Multipart,
) -> ApiResult<Response> {
    // Checked before the body is read: the shard must exist (this peer need not hold it).
    node.recoverable_shard(&name, shard)?;
    let expected = q
        .checksum
        .as_deref()
        .map(crate::snapshot::checksum::parse_expected)
        .transpose()?;
    let priority = q.priority.unwrap_or_default();
    let target = format!("{name}/shards/{shard}");
    let (id, running) = recover_from_upload(
        &node,
        &mut multipart,
        "recover_shard_snapshot",
        &target,
        |node, task, body| async move {
            node.recover_uploaded_shard(&name, shard, body, expected, priority, &task)
                .await
        },
    )
    .await?;
    // Qdrant answers `"result": null` here.
    Ok(recovery_answer(
        serde_json::Value::Null,
        finish_or_accept(id, running, q.wait).await?,
    ))
}
