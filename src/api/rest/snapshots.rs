//! Snapshot routes: collection snapshots (create, list, download, delete, recover,
//! upload), full-storage snapshots, and the task list that keeps `wait=false` outcomes.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::multipart::Field;
use axum::extract::{DefaultBodyLimit, Multipart, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::mpsc;
use tower::ServiceExt;

use super::envelope::{recovery_answer, task_answer, Success};
use super::error::ApiResult;
use super::extract::{default_true, Json, Path, Query, WaitParam};
use crate::error::Error;
use crate::node::snapshots::{RecoverRequest, SnapshotPriority};
use crate::node::tasks::{finish_or_accept, TaskHandle};
use crate::node::Node;
use crate::snapshot::upload::ChannelReader;
use tokio::task::JoinHandle;

/// Name of the multipart field that carries an uploaded snapshot.
const UPLOAD_FIELD: &str = "snapshot";

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/collections/{name}/snapshots", get(list).post(create))
        .route("/collections/{name}/snapshots/recover", put(recover))
        .route(
            "/collections/{name}/snapshots/upload",
            post(upload_and_recover).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/collections/{name}/snapshots/{snapshot}",
            get(download).delete(delete),
        )
        .route("/snapshots", get(list_full).post(create_full))
        .route(
            "/snapshots/{snapshot}",
            get(download_full).delete(delete_full),
        )
        .route("/snapshot-tasks", get(list_tasks))
        .route("/snapshot-tasks/{id}", get(get_task))
}

async fn list(State(node): State<Arc<Node>>, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(Success(node.list_collection_snapshots(&name)?).into_response())
}

async fn create(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Query(q): Query<WaitParam>,
) -> ApiResult<Response> {
    Ok(task_answer(node.snapshot_collection(&name, q.wait).await?))
}

async fn delete(
    State(node): State<Arc<Node>>,
    Path((name, snapshot)): Path<(String, String)>,
    Query(q): Query<WaitParam>,
) -> ApiResult<Response> {
    Ok(task_answer(
        node.remove_collection_snapshot(&name, &snapshot, q.wait)
            .await?,
    ))
}

async fn download(
    State(node): State<Arc<Node>>,
    Path((name, snapshot)): Path<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    let path = node.collection_snapshot_path(&name, &snapshot)?;
    serve_file(path, &snapshot, request).await
}

/// Serves a snapshot file with Range, Last-Modified and a download name.
pub(super) async fn serve_file(path: PathBuf, name: &str, request: Request) -> ApiResult<Response> {
    let served = tower_http::services::ServeFile::new_with_mime(&path, &mime_octet_stream())
        .oneshot(request)
        .await;
    let mut response = match served {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    };
    let disposition = format!("attachment; filename=\"{}\"", name.replace('"', ""));
    if let Ok(value) = disposition.parse() {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

fn mime_octet_stream() -> mime::Mime {
    mime::APPLICATION_OCTET_STREAM
}

/// Body of `PUT /collections/{name}/snapshots/recover`.
#[derive(Deserialize)]
struct RecoverBody {
    location: String,
    #[serde(default)]
    priority: Option<SnapshotPriority>,
    checksum: Option<String>,
    api_key: Option<String>,
}

async fn recover(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Query(q): Query<WaitParam>,
    Json(body): Json<RecoverBody>,
) -> ApiResult<Response> {
    let request = RecoverRequest {
        priority: body.priority.unwrap_or_default(),
        checksum: body.checksum,
        api_key: body.api_key,
    };
    let outcome = node
        .run_task(
            "recover_snapshot",
            &name.clone(),
            q.wait,
            |node, task| async move {
                node.recover_collection(&name, &body.location, request, &task)
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
    Path(name): Path<String>,
    Query(q): Query<UploadQuery>,
    mut multipart: Multipart,
) -> ApiResult<Response> {
    crate::consensus::state::validate_name(&name)?;
    let expected = q
        .checksum
        .as_deref()
        .map(crate::snapshot::checksum::parse_expected)
        .transpose()?;
    let request = RecoverRequest {
        priority: q.priority.unwrap_or_default(),
        checksum: None,
        api_key: None,
    };
    let (id, running) = recover_from_upload(
        &node,
        &mut multipart,
        "recover_snapshot",
        &name.clone(),
        |node, task, body| async move {
            node.recover_uploaded_collection(&name, body, expected, request, &task)
                .await
        },
    )
    .await?;
    Ok(recovery_answer(
        true.into(),
        finish_or_accept(id, running, q.wait).await?,
    ))
}

/// Starts a recovery task fed by the `snapshot` part of a multipart body (other parts
/// are skipped) and streams the part into it; returns once the body is consumed (or the
/// recovery gave up reading it) with the task's id and handle.
pub(super) async fn recover_from_upload<T, Fut>(
    node: &Arc<Node>,
    multipart: &mut Multipart,
    kind: &str,
    target: &str,
    work: impl FnOnce(Arc<Node>, TaskHandle, ChannelReader) -> Fut,
) -> Result<(String, JoinHandle<Result<T, Error>>), Error>
where
    T: serde::Serialize + Send + 'static,
    Fut: std::future::Future<Output = Result<T, Error>> + Send + 'static,
{
    let mut work = Some(work);
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| Error::BadRequest(format!("malformed multipart body: {e}")))?
    {
        if field.name() != Some(UPLOAD_FIELD) {
            continue;
        }
        let Some(work) = work.take() else { break };
        let (sender, body) = ChannelReader::channel();
        let (id, running) = node.spawn_task(kind, target, |node, task| work(node, task, body));
        feed(field, sender).await;
        return Ok((id, running));
    }
    Err(Error::BadRequest(format!(
        "the multipart body has no `{UPLOAD_FIELD}` part"
    )))
}

/// Sends the part's bytes to the recovery reading them on a blocking thread. Stops
/// early if the recovery gave up (its reader is gone); a broken body ends the stream
/// with an error, which fails the recovery.
async fn feed(mut field: Field<'_>, sender: mpsc::Sender<std::io::Result<Bytes>>) {
    loop {
        let chunk = match field.chunk().await {
            Ok(Some(chunk)) => Ok(chunk),
            Ok(None) => return,
            Err(e) => Err(std::io::Error::other(format!(
                "the upload was interrupted: {e}"
            ))),
        };
        let failed = chunk.is_err();
        if failed {
            return;
        }
        if sender.send(chunk).await.is_err() {
            // The recovery refused the archive early: read (and drop) what the client is
            // still sending, within bounds, so that it gets the 400 instead of a
            // connection closed in the middle of its upload.
            drain(field).await;
            return;
        }
    }
}

/// At most this much of a refused upload is read and dropped before answering.
const DRAIN_BYTES: u64 = 256 << 20;
/// And for at most this long.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// Discards the rest of `field`, bounded by [`DRAIN_BYTES`] and [`DRAIN_TIME`] (nothing is
/// kept in memory beyond one chunk).
async fn drain(mut field: Field<'_>) {
    let mut dropped: u64 = 0;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Ok(Some(chunk)) = field.chunk().await {
            dropped += chunk.len() as u64;
            if dropped > DRAIN_BYTES {
                return;
            }
        }
    })
    .await;
}

async fn list_full(State(node): State<Arc<Node>>) -> ApiResult<Response> {
    Ok(Success(node.list_full_snapshots()?).into_response())
}

async fn create_full(
    State(node): State<Arc<Node>>,
    Query(q): Query<WaitParam>,
) -> ApiResult<Response> {
    Ok(task_answer(node.snapshot_storage(q.wait).await?))
}

async fn delete_full(
    State(node): State<Arc<Node>>,
    Path(snapshot): Path<String>,
    Query(q): Query<WaitParam>,
) -> ApiResult<Response> {
    Ok(task_answer(
        node.remove_full_snapshot(&snapshot, q.wait).await?,
    ))
}

async fn download_full(
    State(node): State<Arc<Node>>,
    Path(snapshot): Path<String>,
    request: Request,
) -> ApiResult<Response> {
    let path = node.full_snapshot_path(&snapshot)?;
    serve_file(path, &snapshot, request).await
}

async fn list_tasks(State(node): State<Arc<Node>>) -> Success<Vec<crate::node::tasks::TaskInfo>> {
    Success(node.tasks.list())
}

async fn get_task(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> ApiResult<Success<crate::node::tasks::TaskInfo>> {
    let task = node
        .tasks
        .get(&id)
        .ok_or_else(|| Error::NotFound(format!("Task {id} not found")))?;
    Ok(Success(task))
}
