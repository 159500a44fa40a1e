//! `qdrant.Snapshots`: collection and full-storage snapshots; always synchronous, as in
//! Qdrant (the node's task runs to its end before the answer).

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::convert::snapshots::{collection_name, description, descriptions, snapshot_name};
use super::proto::snapshots_server::Snapshots;
use super::proto::*;
use super::{answer, seconds_since};
use crate::error::{Error, Result};
use crate::node::tasks::TaskOutcome;
use crate::node::Node;

pub struct SnapshotsService {
    pub node: Arc<Node>,
}

/// The result of a task that was awaited (`wait = true` always finishes it).
fn finished<T>(outcome: TaskOutcome<T>) -> Result<T> {
    match outcome {
        TaskOutcome::Finished(value) => Ok(value),
        TaskOutcome::Accepted(id) => Err(Error::Service(format!(
            "snapshot task {id} was not awaited"
        ))),
    }
}

#[tonic::async_trait]
impl Snapshots for SnapshotsService {
    async fn create(
        &self,
        request: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        let start = Instant::now();
        let name = request.into_inner().collection_name;
        answer(async {
            let name = collection_name(name)?;
            let created = finished(self.node.snapshot_collection(&name, true).await?)?;
            Ok(CreateSnapshotResponse {
                snapshot_description: Some(description(created)),
                time: seconds_since(start),
            })
        })
        .await
    }

    async fn list(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        let start = Instant::now();
        let name = request.into_inner().collection_name;
        answer(async {
            let list = self
                .node
                .list_collection_snapshots(&collection_name(name)?)?;
            Ok(ListSnapshotsResponse {
                snapshot_descriptions: descriptions(list),
                time: seconds_since(start),
            })
        })
        .await
    }

    async fn delete(
        &self,
        request: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        let start = Instant::now();
        let request = request.into_inner();
        answer(async {
            let name = collection_name(request.collection_name)?;
            let snapshot = snapshot_name(request.snapshot_name)?;
            finished(
                self.node
                    .remove_collection_snapshot(&name, &snapshot, true)
                    .await?,
            )?;
            Ok(DeleteSnapshotResponse {
                time: seconds_since(start),
            })
        })
        .await
    }

    async fn create_full(
        &self,
        _request: Request<CreateFullSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        let start = Instant::now();
        answer(async {
            let created = finished(self.node.snapshot_storage(true).await?)?;
            Ok(CreateSnapshotResponse {
                snapshot_description: Some(description(created)),
                time: seconds_since(start),
            })
        })
        .await
    }

    async fn list_full(
        &self,
        _request: Request<ListFullSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        let start = Instant::now();
        answer(async {
            let list = self.node.list_full_snapshots()?;
            Ok(ListSnapshotsResponse {
                snapshot_descriptions: descriptions(list),
                time: seconds_since(start),
            })
        })
        .await
    }

    async fn delete_full(
        &self,
        request: Request<DeleteFullSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        let start = Instant::now();
        let name = request.into_inner().snapshot_name;
        answer(async {
            let name = snapshot_name(name)?;
            finished(self.node.remove_full_snapshot(&name, true).await?)?;
            Ok(DeleteSnapshotResponse {
                time: seconds_since(start),
            })
        })
        .await
    }
}
