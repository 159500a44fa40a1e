//! `--mode snapshot`: snapshot create and recover figures for issue 3's targets.
//!
//! After the load: the disk's sequential write speed (`dd ... conv=fdatasync` in the
//! server's directory, same disk), then a collection snapshot while the server's RSS and
//! the disk use of its directory are sampled, then a second server recovers the snapshot
//! by multipart upload and by URL (pulling from the first). Each recovered collection is
//! checked to hold every point.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::{call, peak_rss, start_server, wait_ready, Options, Server};

const MIB: f64 = 1024.0 * 1024.0;

pub async fn run(o: &Options, http: &reqwest::Client, base: &str, server: &Server) -> Result<()> {
    let dd = disk_write_speed(server.dir.path(), 1024)?;
    println!("disk: dd conv=fdatasync {dd:.0} MiB/s (1 GiB into the server's directory)");

    let (rss_before, disk_before) = (current_rss(server.child.id()), dir_size(server.dir.path()));
    let sampler = Sampler::start(server.child.id(), server.dir.path().to_path_buf());
    let started = Instant::now();
    let created = call(
        http,
        reqwest::Method::POST,
        format!("{base}/collections/bench/snapshots"),
        &Value::Null,
    )
    .await?;
    let took = started.elapsed();
    let (peak_rss_during, peak_disk_during) = sampler.stop();
    let size = created["size"].as_u64().context("snapshot size")?;
    let name = created["name"]
        .as_str()
        .context("snapshot name")?
        .to_string();
    let speed = size as f64 / MIB / took.as_secs_f64();
    println!(
        "create: {:.1} MiB in {:.2} s = {speed:.0} MiB/s ({:.0}% of dd)",
        size as f64 / MIB,
        took.as_secs_f64(),
        100.0 * speed / dd
    );
    println!(
        "create: extra memory {:.1} MiB (peak RSS during create minus RSS before)",
        peak_rss_during.saturating_sub(rss_before) as f64 / MIB
    );
    let extra_disk = peak_disk_during.saturating_sub(disk_before);
    println!(
        "create: extra disk {:.1} MiB = archive + {:.2}%",
        extra_disk as f64 / MIB,
        100.0 * (extra_disk as f64 - size as f64).max(0.0) / size as f64
    );

    let (second, second_base) = start_server(&o.server)?;
    wait_ready(http, &second_base).await?;
    let file = server
        .dir
        .path()
        .join("snapshots")
        .join("bench")
        .join(&name);

    let started = Instant::now();
    upload(http, &second_base, "from_upload", &file, "").await?;
    let took = started.elapsed();
    expect_points(http, &second_base, "from_upload", o.points).await?;
    println!(
        "upload-recover: {:.0} MiB/s end to end ({:.2} s)",
        size as f64 / MIB / took.as_secs_f64(),
        took.as_secs_f64()
    );

    let started = Instant::now();
    let location = format!("{base}/collections/bench/snapshots/{name}");
    call(
        http,
        reqwest::Method::PUT,
        format!("{second_base}/collections/from_url/snapshots/recover"),
        &json!({"location": location}),
    )
    .await?;
    let took = started.elapsed();
    expect_points(http, &second_base, "from_url", o.points).await?;
    println!(
        "url-recover: {:.0} MiB/s end to end ({:.2} s)",
        size as f64 / MIB / took.as_secs_f64(),
        took.as_secs_f64()
    );
    if let Some(rss) = peak_rss(second.child.id()) {
        println!("recovering server peak RSS: {:.1} MiB", rss as f64 / MIB);
    }
    Ok(())
}

/// Streams a file as the multipart `snapshot` part.
/// Multipart upload of a snapshot file to `collection`'s upload route (`query` is added
/// to the URL, e.g. `priority=snapshot`).
pub(super) async fn upload(
    http: &reqwest::Client,
    base: &str,
    collection: &str,
    file: &Path,
    query: &str,
) -> Result<()> {
    let handle = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let len = handle.metadata().await?.len();
    let body =
        reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(handle, 1 << 20));
    let part = reqwest::multipart::Part::stream_with_length(body, len).file_name("bench.snapshot");
    let form = reqwest::multipart::Form::new().part("snapshot", part);
    let response = http
        .post(format!(
            "{base}/collections/{collection}/snapshots/upload?{query}"
        ))
        .multipart(form)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "upload failed: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

async fn expect_points(
    http: &reqwest::Client,
    base: &str,
    collection: &str,
    points: usize,
) -> Result<()> {
    let count = call(
        http,
        reqwest::Method::POST,
        format!("{base}/collections/{collection}/points/count"),
        &json!({}),
    )
    .await?;
    if count["count"].as_u64() != Some(points as u64) {
        bail!("{collection} holds {count} points after recovery, expected {points}");
    }
    Ok(())
}

/// MiB/s of `dd if=/dev/zero ... conv=fdatasync` writing `mib` MiB into `dir`.
fn disk_write_speed(dir: &Path, mib: usize) -> Result<f64> {
    let target = dir.join("dd.bench");
    let started = Instant::now();
    let status = std::process::Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", target.display()))
        .arg("bs=1M")
        .arg(format!("count={mib}"))
        .arg("conv=fdatasync")
        .stderr(std::process::Stdio::null())
        .status()
        .context("running dd")?;
    let took = started.elapsed();
    let _ = std::fs::remove_file(&target);
    if !status.success() {
        bail!("dd failed: {status}");
    }
    Ok(mib as f64 / took.as_secs_f64())
}

/// Current resident set (VmRSS) of a process, in bytes.
fn current_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Bytes of every file below `dir`.
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => stack.push(entry.path()),
                Ok(meta) => total += meta.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Samples a process's RSS and a directory's size on a thread until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    rss: Arc<AtomicU64>,
    disk: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32, dir: std::path::PathBuf) -> Sampler {
        let (stop, rss, disk) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let thread = {
            let (stop, rss, disk) = (stop.clone(), rss.clone(), disk.clone());
            std::thread::spawn(move || {
                // Bounded: one sample every 20 ms for at most an hour.
                for _ in 0..180_000 {
                    rss.fetch_max(current_rss(pid), Ordering::Relaxed);
                    disk.fetch_max(dir_size(&dir), Ordering::Relaxed);
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Sampler {
            stop,
            rss,
            disk,
            thread,
        }
    }

    /// Peak RSS and peak directory size seen.
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        (
            self.rss.load(Ordering::Relaxed),
            self.disk.load(Ordering::Relaxed),
        )
    }
}
