//! Makes unpacked files durable on a helper thread.
//!
//! Unpacking writes a file into the page cache and hands it to the [`Syncer`], whose
//! thread fsyncs it while the next files are received, hashed and written, so the
//! disk writes one file back while the CPU works on the next (an fsync after each file
//! in line stalled the whole pipeline for every file). [`Syncer::finish`] waits until
//! every file handed over is durable and reports the first failure; nothing may be
//! swapped in before it returns `Ok`.

use std::fs::File;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// Files that may wait for their fsync (open handles only, no data).
const QUEUE: usize = 64;

/// A file to fsync and the name it is reported by.
type Pending = (File, String);

pub struct Syncer {
    worker: Option<(SyncSender<Pending>, JoinHandle<Result<()>>)>,
}

impl Default for Syncer {
    fn default() -> Self {
        let (tx, rx) = sync_channel::<Pending>(QUEUE);
        let worker = std::thread::Builder::new()
            .name("unpack-fsync".into())
            .spawn(move || {
                let mut result = Ok(());
                for (file, name) in rx {
                    if result.is_ok() {
                        result = sync(&file, &name);
                    }
                }
                result
            })
            .ok()
            .map(|handle| (tx, handle));
        Syncer { worker }
    }
}

impl Syncer {
    /// Queues `file` (written and flushed) for its fsync; `name` names it in errors.
    /// Without a helper thread the file is synced right here.
    pub fn sync_later(&self, file: File, name: &str) -> Result<()> {
        match &self.worker {
            Some((tx, _)) => match tx.send((file, name.to_string())) {
                Ok(()) => Ok(()),
                // The thread ended early (it only ends when the channel closes, so this
                // means it panicked): sync here, `finish` passes the panic on.
                Err(unsent) => sync(&unsent.0 .0, name),
            },
            None => sync(&file, name),
        }
    }

    /// Waits until every queued file is durable; the first failure, if any.
    pub fn finish(mut self) -> Result<()> {
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        let Some((tx, handle)) = self.worker.take() else {
            return Ok(());
        };
        drop(tx);
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Syncer {
    /// An unpack that fails still waits for the fsyncs it queued (their files are
    /// about to be removed), so no thread outlives it.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = self.join();
        }
    }
}

fn sync(file: &File, name: &str) -> Result<()> {
    file.sync_all()
        .map_err(|e| Error::io(format!("syncing `{name}`"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn queued_files_are_synced_before_finish_returns() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = Syncer::default();
        for i in 0..5 {
            let path = dir.path().join(format!("{i}.bin"));
            let mut file = File::create(&path).unwrap();
            file.write_all(&[i as u8; 4096]).unwrap();
            syncer.sync_later(file, &format!("{i}.bin")).unwrap();
        }
        syncer.finish().unwrap();
        for i in 0..5 {
            assert_eq!(
                std::fs::read(dir.path().join(format!("{i}.bin"))).unwrap(),
                vec![i as u8; 4096]
            );
        }
    }

    #[test]
    fn a_failed_sync_is_reported_by_finish() {
        // fsync of /dev/null fails with EINVAL on Linux.
        let null = File::open("/dev/null").unwrap();
        assert!(
            null.sync_all().is_err(),
            "expected fsync of /dev/null to fail"
        );
        let syncer = Syncer::default();
        syncer.sync_later(null, "null").unwrap();
        let err = syncer.finish().unwrap_err();
        assert!(err.to_string().contains("null"), "{err}");
    }
}
