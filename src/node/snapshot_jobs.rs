//! Snapshot operations as the APIs start them: each runs as a task in the task registry
//! (so `GET /snapshot-tasks` sees it) and is awaited or, with `wait=false`, left running.
//! REST passes the client's `wait`; gRPC always waits, as Qdrant's gRPC API does.

use std::sync::Arc;

use super::tasks::TaskOutcome;
use super::Node;
use crate::error::Result;
use crate::snapshot::store::SnapshotDescription;

impl Node {
    /// Creates a snapshot of one collection (a missing collection fails at once,
    /// whatever `wait` says).
    pub async fn snapshot_collection(
        self: &Arc<Self>,
        name: &str,
        wait: bool,
    ) -> Result<TaskOutcome<SnapshotDescription>> {
        self.collection(name)?;
        let owned = name.to_string();
        self.run_task("create_snapshot", name, wait, |node, task| async move {
            node.create_collection_snapshot(&owned, &task).await
        })
        .await
    }

    pub async fn remove_collection_snapshot(
        self: &Arc<Self>,
        name: &str,
        snapshot: &str,
        wait: bool,
    ) -> Result<TaskOutcome<bool>> {
        let target = format!("{name}/{snapshot}");
        let (name, snapshot) = (name.to_string(), snapshot.to_string());
        self.run_task("delete_snapshot", &target, wait, |node, _| async move {
            node.delete_collection_snapshot(&name, &snapshot)
                .map(|()| true)
        })
        .await
    }

    pub async fn snapshot_storage(
        self: &Arc<Self>,
        wait: bool,
    ) -> Result<TaskOutcome<SnapshotDescription>> {
        self.run_task("create_full_snapshot", "*", wait, |node, task| async move {
            node.create_full_snapshot(&task).await
        })
        .await
    }

    pub async fn remove_full_snapshot(
        self: &Arc<Self>,
        snapshot: &str,
        wait: bool,
    ) -> Result<TaskOutcome<bool>> {
        let owned = snapshot.to_string();
        self.run_task(
            "delete_full_snapshot",
            snapshot,
            wait,
            |node, _| async move { node.delete_full_snapshot(&owned).map(|()| true) },
        )
        .await
    }
}
