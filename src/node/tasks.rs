//! A registry of long-running snapshot and recovery jobs, so that an outcome is never
//! lost: every job (with `wait=true` or `wait=false`) is recorded with its state, the
//! bytes it has processed and, if it failed, its error. `GET /snapshot-tasks` lists the
//! most recent ones. Failures are also logged.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use parking_lot::Mutex;
use serde::Serialize;

use crate::error::Error;
use crate::metrics::{Metrics, OperationKind};

/// How many finished tasks are kept for listing.
const KEEP_FINISHED: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Running,
    Succeeded,
    Failed,
}

/// What a task is, for listing.
#[derive(Debug, Clone, Serialize)]
pub struct TaskInfo {
    pub id: String,
    pub kind: String,
    pub target: String,
    pub state: TaskState,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub bytes_done: u64,
    pub error: Option<String>,
    pub result: Option<serde_json::Value>,
}

struct TaskEntry {
    info: Mutex<TaskInfo>,
    bytes: Arc<AtomicU64>,
    /// Where the job counts in the metrics, if it is a creation or a recovery.
    counted: Option<(Arc<Metrics>, OperationKind)>,
    started: Instant,
    /// Set by the first [`TaskHandle::finish`], so a job is counted as ended once.
    ended: AtomicBool,
}

/// Progress handle given to a running job.
#[derive(Clone)]
pub struct TaskHandle {
    entry: Arc<TaskEntry>,
}

impl TaskHandle {
    pub fn id(&self) -> String {
        self.entry.info.lock().id.clone()
    }

    /// Counter of processed bytes, shared with readers and writers.
    pub fn bytes(&self) -> Arc<AtomicU64> {
        self.entry.bytes.clone()
    }

    /// Records the outcome (and logs a failure).
    pub fn finish<T: Serialize>(&self, outcome: &Result<T, Error>) {
        if let Some((metrics, kind)) = &self.entry.counted {
            if !self.entry.ended.swap(true, Ordering::Relaxed) {
                metrics.operations.of(*kind).ended(
                    outcome.is_ok(),
                    self.entry.bytes.load(Ordering::Relaxed),
                    self.entry.started.elapsed(),
                );
            }
        }
        let mut info = self.entry.info.lock();
        info.finished_at = Some(now());
        info.bytes_done = self.entry.bytes.load(Ordering::Relaxed);
        match outcome {
            Ok(value) => {
                info.state = TaskState::Succeeded;
                info.result = serde_json::to_value(value).ok();
            }
            Err(err) => {
                // A bad request is the caller's business; anything else is ours.
                if err.is_user_error() {
                    tracing::warn!(task = %info.id, kind = %info.kind, target = %info.target, %err, "snapshot task refused");
                } else {
                    tracing::error!(task = %info.id, kind = %info.kind, target = %info.target, %err, "snapshot task failed");
                }
                info.state = TaskState::Failed;
                info.error = Some(err.to_string());
            }
        }
    }
}

#[derive(Default)]
pub struct TaskRegistry {
    tasks: Mutex<VecDeque<Arc<TaskEntry>>>,
    /// Where snapshot creations and recoveries are counted.
    metrics: Arc<Metrics>,
}

impl TaskRegistry {
    /// A registry that counts its snapshot jobs in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> TaskRegistry {
        TaskRegistry {
            tasks: Mutex::default(),
            metrics,
        }
    }

    pub fn start(&self, kind: &str, target: &str) -> TaskHandle {
        let counted = OperationKind::of_task(kind).map(|op| (self.metrics.clone(), op));
        if let Some((metrics, op)) = &counted {
            metrics.operations.of(*op).started();
        }
        let entry = Arc::new(TaskEntry {
            info: Mutex::new(TaskInfo {
                id: uuid::Uuid::new_v4().to_string(),
                kind: kind.to_string(),
                target: target.to_string(),
                state: TaskState::Running,
                started_at: now(),
                finished_at: None,
                bytes_done: 0,
                error: None,
                result: None,
            }),
            bytes: Arc::new(AtomicU64::new(0)),
            counted,
            started: Instant::now(),
            ended: AtomicBool::new(false),
        });
        let mut tasks = self.tasks.lock();
        tasks.push_back(entry.clone());
        // Forget the oldest finished tasks beyond the limit (leaving room for the one
        // just started); running ones always stay.
        while tasks
            .iter()
            .filter(|t| t.info.lock().state != TaskState::Running)
            .count()
            >= KEEP_FINISHED
        {
            match tasks
                .iter()
                .position(|t| t.info.lock().state != TaskState::Running)
            {
                Some(oldest) => {
                    tasks.remove(oldest);
                }
                None => break,
            }
        }
        TaskHandle { entry }
    }

    /// Every known task, oldest first, with live byte counts.
    pub fn list(&self) -> Vec<TaskInfo> {
        self.tasks
            .lock()
            .iter()
            .map(|t| {
                let mut info = t.info.lock().clone();
                info.bytes_done = t.bytes.load(Ordering::Relaxed);
                info
            })
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<TaskInfo> {
        self.list().into_iter().find(|t| t.id == id)
    }
}

fn now() -> String {
    Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Ends a task as failed if its job never reached its end (it panicked).
struct FinishOnDrop(Option<TaskHandle>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.finish(&Err::<(), _>(Error::service("the job panicked")));
        }
    }
}

/// The outcome of a job started through [`crate::node::Node::run_task`].
pub enum TaskOutcome<T> {
    /// The caller waited and the job finished.
    Finished(T),
    /// `wait=false`: the job runs on; its id is the handle for `GET /snapshot-tasks/{id}`.
    Accepted(String),
}

impl crate::node::Node {
    /// Starts a snapshot job as a detached task (a client that disconnects does not
    /// cancel it) recorded in the registry; returns its id and a handle to await it.
    pub fn spawn_task<T, Fut>(
        self: &Arc<Self>,
        kind: &str,
        target: &str,
        work: impl FnOnce(Arc<crate::node::Node>, TaskHandle) -> Fut,
    ) -> (String, tokio::task::JoinHandle<Result<T, Error>>)
    where
        T: Serialize + Send + 'static,
        Fut: std::future::Future<Output = Result<T, Error>> + Send + 'static,
    {
        let task = self.tasks.start(kind, target);
        let id = task.id();
        let job = work(self.clone(), task.clone());
        let running = tokio::spawn(async move {
            // A job that panics still ends its task (listed and counted as failed).
            let mut unfinished = FinishOnDrop(Some(task));
            let outcome = job.await;
            if let Some(task) = unfinished.0.take() {
                task.finish(&outcome);
            }
            outcome
        });
        (id, running)
    }

    /// [`Self::spawn_task`], then waits for the job only if `wait`.
    pub async fn run_task<T, Fut>(
        self: &Arc<Self>,
        kind: &str,
        target: &str,
        wait: bool,
        work: impl FnOnce(Arc<crate::node::Node>, TaskHandle) -> Fut,
    ) -> Result<TaskOutcome<T>, Error>
    where
        T: Serialize + Send + 'static,
        Fut: std::future::Future<Output = Result<T, Error>> + Send + 'static,
    {
        let (id, running) = self.spawn_task(kind, target, work);
        finish_or_accept(id, running, wait).await
    }
}

/// Awaits a spawned job when `wait`, else answers with its id.
pub async fn finish_or_accept<T>(
    id: String,
    running: tokio::task::JoinHandle<Result<T, Error>>,
    wait: bool,
) -> Result<TaskOutcome<T>, Error> {
    if wait {
        running
            .await
            .map_err(Error::service)?
            .map(TaskOutcome::Finished)
    } else {
        Ok(TaskOutcome::Accepted(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_kept() {
        let registry = TaskRegistry::default();
        let ok = registry.start("create_snapshot", "c");
        ok.bytes().fetch_add(10, Ordering::Relaxed);
        ok.finish(&Ok::<_, Error>("x"));
        let bad = registry.start("recover_snapshot", "c");
        bad.finish(&Err::<(), _>(Error::BadInput("broken".into())));
        let list = registry.list();
        assert_eq!(list[0].state, TaskState::Succeeded);
        assert_eq!(list[0].bytes_done, 10);
        assert_eq!(list[1].error.as_deref(), Some("Wrong input: broken"));
        assert!(registry.get(&bad.id()).is_some());
    }

    #[test]
    fn jobs_are_counted_once_and_an_abandoned_one_ends_as_failed() {
        let metrics = Arc::new(Metrics::default());
        let registry = TaskRegistry::new(metrics.clone());
        let created = registry.start("create_snapshot", "c");
        created.bytes().fetch_add(7, Ordering::Relaxed);
        created.finish(&Ok::<_, Error>(()));
        created.finish(&Ok::<_, Error>(()));
        let create = metrics.operations.snapshot_create.snapshot();
        assert_eq!((create.running, create.finished, create.bytes), (0, 1, 7));

        let recovery = registry.start("recover_snapshot", "c");
        assert_eq!(metrics.operations.snapshot_recover.snapshot().running, 1);
        drop(FinishOnDrop(Some(recovery.clone())));
        let recover = metrics.operations.snapshot_recover.snapshot();
        assert_eq!((recover.running, recover.failed), (0, 1));
        assert_eq!(
            registry.get(&recovery.id()).unwrap().state,
            TaskState::Failed
        );

        registry
            .start("delete_snapshot", "c")
            .finish(&Ok::<_, Error>(()));
        assert_eq!(metrics.operations.snapshot_create.snapshot().finished, 1);
    }

    #[test]
    fn old_finished_tasks_are_forgotten() {
        let registry = TaskRegistry::default();
        let running = registry.start("create_snapshot", "keep");
        for _ in 0..(KEEP_FINISHED + 5) {
            registry.start("x", "y").finish(&Ok::<_, Error>(()));
        }
        let list = registry.list();
        assert_eq!(list.len(), KEEP_FINISHED + 1);
        assert_eq!(list[0].id, running.id());
    }
}
