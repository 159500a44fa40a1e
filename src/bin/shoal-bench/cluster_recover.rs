//! `--mode cluster-recover`: issue 5's target. The collection `main` loaded on a single
//! node (3 shards, replication factor 2 in its config) is snapshotted once, then:
//!
//! 1. a second single node recovers it by upload: the single-node recover time;
//! 2. a fresh three-peer cluster on loopback recovers it by upload to its first peer with
//!    `priority=snapshot`: the collection is created over all peers (3 shards × 2
//!    replicas), the first peer's copies win, and the others are re-synced from it. Timed
//!    from the upload until every replica is Active with all of the shard's points.
//!
//! Both are repeated `--rounds` times (fresh servers each time) from the one snapshot: on
//! a shared two-core machine single runs vary by ±30%, and the load before them takes
//! minutes. Each round prints its ratio; the median ratio is the figure.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::cluster::{start_cluster, Peer};
use super::snapshots::upload;
use super::{call, cpu_seconds, start_server, wait_indexed, wait_ready, Options, Server};

const MIB: f64 = 1024.0 * 1024.0;

pub async fn run(o: &Options, http: &reqwest::Client, base: &str, server: &Server) -> Result<()> {
    let (index_wait, indexed) = wait_indexed(http, base).await?;
    println!(
        "indexing: {indexed} vectors indexed, waited {:.1} s after the load",
        index_wait.as_secs_f64()
    );
    let created = call(
        http,
        reqwest::Method::POST,
        format!("{base}/collections/bench/snapshots"),
        &Value::Null,
    )
    .await?;
    let name = created["name"].as_str().context("snapshot name")?;
    let size = created["size"].as_u64().context("snapshot size")? as f64 / MIB;
    let file: PathBuf = server.dir.path().join("snapshots").join("bench").join(name);
    println!("snapshot: {size:.1} MiB");

    let mut ratios = Vec::new();
    for round in 1..=o.rounds {
        println!("round {round} of {}:", o.rounds);
        ratios.push(recover_round(o, http, &file, size).await?);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "cluster / single node, median of {} rounds: {:.2}x (target: at most 2x; all: {})",
        ratios.len(),
        ratios[ratios.len() / 2],
        ratios
            .iter()
            .map(|r| format!("{r:.2}x"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// One single-node recovery and one cluster recovery of `file`; returns their ratio.
async fn recover_round(o: &Options, http: &reqwest::Client, file: &Path, size: f64) -> Result<f64> {
    let single = {
        let (second, second_base) = start_server(&o.server)?;
        wait_ready(http, &second_base).await?;
        let cpu_before = cpu_seconds(second.child.id());
        let started = Instant::now();
        upload(http, &second_base, "bench", file, "priority=snapshot").await?;
        let took = started.elapsed();
        let cpu = cpu_seconds(second.child.id()) - cpu_before;
        drop(second);
        (took, cpu)
    };
    let (single, single_cpu) = single;
    println!(
        "single node: upload-recover in {:.2} s ({:.0} MiB/s), {single_cpu:.2} s of CPU",
        single.as_secs_f64(),
        size / single.as_secs_f64()
    );

    let peers = start_cluster(o, http).await?;
    let cpu_before: Vec<f64> = peers.iter().map(|p| cpu_seconds(p.pid())).collect();
    let started = Instant::now();
    upload(http, &peers[0].base, "bench", file, "priority=snapshot").await?;
    let answered = started.elapsed();
    let replicas = wait_all_active(http, &peers, o.points as u64).await?;
    let took = started.elapsed();
    let cpu: Vec<String> = peers
        .iter()
        .zip(&cpu_before)
        .map(|(p, before)| format!("{:.2}", cpu_seconds(p.pid()) - before))
        .collect();
    println!(
        "cluster: CPU seconds per peer from the upload until settled (the first peer recovers): {}",
        cpu.join(", ")
    );
    println!(
        "cluster: upload-recover answered in {:.2} s; all {replicas} replicas Active with every point after {:.2} s = {:.2}x the single-node time (target: at most 2x)",
        answered.as_secs_f64(),
        took.as_secs_f64(),
        took.as_secs_f64() / single.as_secs_f64()
    );
    Ok(took.as_secs_f64() / single.as_secs_f64())
}

/// Waits (bounded) until every replica of `bench` is Active in the first peer's view and
/// the local replicas of all peers hold `points` per shard copy in total; returns the
/// number of replicas.
async fn wait_all_active(http: &reqwest::Client, peers: &[Peer], points: u64) -> Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(1200);
    while Instant::now() < deadline {
        let mut states = Vec::new();
        let mut stored = std::collections::BTreeMap::<u64, Vec<u64>>::new();
        for peer in peers {
            let info = call(
                http,
                reqwest::Method::GET,
                format!("{}/collections/bench/cluster", peer.base),
                &Value::Null,
            )
            .await?;
            for local in info["local_shards"].as_array().context("local_shards")? {
                states.push(local["state"].as_str().unwrap_or_default().to_string());
                let shard = local["shard_id"].as_u64().context("shard_id")?;
                let count = local["points_count"].as_u64().context("points_count")?;
                stored.entry(shard).or_default().push(count);
            }
        }
        let per_copy: u64 = stored
            .values()
            .map(|c| c.iter().min().copied().unwrap_or(0))
            .sum();
        let alike = stored.values().all(|c| c.iter().all(|n| *n == c[0]));
        if !states.is_empty() && states.iter().all(|s| s == "Active") && alike && per_copy == points
        {
            return Ok(states.len());
        }
        // Short: the poll interval is part of the measured time.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("the recovered collection did not settle on the cluster in 1200 s")
}
