//! Snapshot routes: collection snapshots (create, list, download, delete, recover,
//! upload), full-storage snapshots, and the task list that keeps `wait=false` outcomes.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde::Deserialize;
use tower::ServiceExt;

use super::envelope::{task_answer, Accepted, Success, SuccessWith};
use super::error::ApiResult;
use super::extract::{default_true, Json, Path, Query, WaitParam};
use crate::error::Error;
use crate::node::snapshots::{RecoverRequest, SnapshotPriority};
use crate::node::tasks::TaskOutcome;
use crate::node::Node;
use crate::snapshot::upload;

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
    // Fail fast on a missing collection, whatever `wait` says.
    node.collection(&name)?;
    let outcome = node
        .run_task(
            "create_snapshot",
            &name.clone(),
            q.wait,
            |node, task| async move { node.create_collection_snapshot(&name, &task).await },
        )
        .await?;
    Ok(task_answer(outcome))
}

async fn delete(
    State(node): State<Arc<Node>>,
    Path((name, snapshot)): Path<(String, String)>,
    Query(q): Query<WaitParam>,
) -> ApiResult<Response> {
    let target = format!("{name}/{snapshot}");
    let outcome = node
        .run_task("delete_snapshot", &target, q.wait, |node, _| async move {
            node.delete_collection_snapshot(&name, &snapshot)
                .map(|()| true)
        })
        .await?;
    Ok(task_answer(outcome))
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
    Ok(match outcome {
        TaskOutcome::Finished(report) => SuccessWith(true, "recovery", report).into_response(),
        TaskOutcome::Accepted(id) => Accepted(id).into_response(),
    })
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
    multipart: Multipart,
) -> ApiResult<Response> {
    crate::consensus::state::validate_name(&name)?;
    let expected = q
        .checksum
        .as_deref()
        .map(crate::snapshot::checksum::parse_expected)
        .transpose()?;
    let store = node.snapshot_store();
    let stored =
        receive_upload(multipart, &store.collection_dir(&name), expected.as_deref()).await?;
    let request = RecoverRequest {
        priority: q.priority.unwrap_or_default(),
        checksum: None,
        api_key: None,
    };
    let outcome = node
        .run_task(
            "recover_snapshot",
            &name.clone(),
            q.wait,
            |node, task| async move {
                node.recover_uploaded_collection(&name, &stored, request, &task)
                    .await
            },
        )
        .await?;
    Ok(match outcome {
        TaskOutcome::Finished(report) => SuccessWith(true, "recovery", report).into_response(),
        TaskOutcome::Accepted(id) => Accepted(id).into_response(),
    })
}

/// Streams the `snapshot` part of a multipart body into `dir`; other parts are skipped.
pub(super) async fn receive_upload(
    mut multipart: Multipart,
    dir: &std::path::Path,
    expected: Option<&str>,
) -> Result<PathBuf, Error> {
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|e| Error::BadRequest(format!("malformed multipart body: {e}")))?
            .ok_or_else(|| {
                Error::BadRequest(format!("the multipart body has no `{UPLOAD_FIELD}` part"))
            })?;
        if field.name() == Some(UPLOAD_FIELD) {
            let file_name = field.file_name().map(str::to_string);
            return upload::store_stream(Box::pin(field), dir, file_name.as_deref(), expected)
                .await;
        }
    }
}

async fn list_full(State(node): State<Arc<Node>>) -> ApiResult<Response> {
    Ok(Success(node.list_full_snapshots()?).into_response())
}

async fn create_full(
    State(node): State<Arc<Node>>,
    Query(q): Query<WaitParam>,
) -> ApiResult<Response> {
    let outcome = node
        .run_task(
            "create_full_snapshot",
            "*",
            q.wait,
            |node, task| async move { node.create_full_snapshot(&task).await },
        )
        .await?;
    Ok(task_answer(outcome))
}

async fn delete_full(
    State(node): State<Arc<Node>>,
    Path(snapshot): Path<String>,
    Query(q): Query<WaitParam>,
) -> ApiResult<Response> {
    let outcome = node
        .run_task(
            "delete_full_snapshot",
            &snapshot.clone(),
            q.wait,
            |node, _| async move { node.delete_full_snapshot(&snapshot).map(|()| true) },
        )
        .await?;
    Ok(task_answer(outcome))
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
