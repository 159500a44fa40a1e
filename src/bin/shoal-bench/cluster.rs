//! `--mode cluster`: issue 4's targets on three peers started as processes on loopback
//! (each with its own temporary directory), after the single-node load `main` measured.
//!
//! 1. Metadata commit latency: collections created one after the other, through each
//!    peer in turn (a follower forwards to the leader); a create returns once it is
//!    applied on the peer that took it. Median and 90th percentile.
//! 2. Replicated writes: the same load into a collection with 3 shards × 2 replicas,
//!    through the first peer, against the single-node figure.
//! 3. Shard transfers: a one-shard collection on one peer, loaded and indexed, is
//!    replicated to a second peer by `stream_records` and to the third by `snapshot`;
//!    each is timed from the request until the new replica is Active, and its point
//!    count is checked. Speed is the raw vector data (points × dim × 4 bytes) per second.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::{
    call, free_port, start_peer, upsert_into, wait_indexed_of, wait_ready, Options, Server,
};

const MIB: f64 = 1024.0 * 1024.0;
/// Metadata ops timed.
const METADATA_OPS: usize = 30;

pub(super) struct Peer {
    server: Server,
    pub base: String,
    pub id: u64,
}

impl Peer {
    pub fn pid(&self) -> u32 {
        self.server.child.id()
    }
}

pub async fn run(o: &Options, http: &reqwest::Client, single_node_rate: f64) -> Result<()> {
    let peers = start_cluster(o, http).await?;
    println!(
        "cluster: 3 peers on loopback ({})",
        peers
            .iter()
            .map(|p| p.id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut latencies = Vec::with_capacity(METADATA_OPS);
    for i in 0..METADATA_OPS {
        let peer = &peers[i % peers.len()];
        let body = json!({"vectors": {"size": 4, "distance": "Dot"}});
        let started = Instant::now();
        call(
            http,
            reqwest::Method::PUT,
            format!("{}/collections/meta_{i}", peer.base),
            &body,
        )
        .await?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "metadata: create collection committed in {:.1} ms median, {:.1} ms p90 ({METADATA_OPS} creates, through each peer in turn)",
        ms(latencies[METADATA_OPS / 2]),
        ms(latencies[METADATA_OPS * 9 / 10])
    );

    let entry = &peers[0];
    call(
        http,
        reqwest::Method::PUT,
        format!("{}/collections/bench", entry.base),
        &json!({"vectors": {"size": o.dim, "distance": "Cosine"}, "shard_number": 3, "replication_factor": 2}),
    )
    .await?;
    let took = upsert_into(http, &entry.base, "bench", o).await?;
    let rate = o.points as f64 / took.as_secs_f64();
    println!(
        "replicated upsert (3 shards x 2 replicas): {rate:.0} points/s ({:.1} s) = {:.0}% of the single node's {single_node_rate:.0} points/s",
        took.as_secs_f64(),
        100.0 * rate / single_node_rate
    );
    call(
        http,
        reqwest::Method::DELETE,
        format!("{}/collections/bench", entry.base),
        &Value::Null,
    )
    .await?;

    transfers(o, http, &peers).await
}

async fn transfers(o: &Options, http: &reqwest::Client, peers: &[Peer]) -> Result<()> {
    let entry = &peers[0];
    call(
        http,
        reqwest::Method::PUT,
        format!("{}/collections/moved", entry.base),
        &json!({"vectors": {"size": o.dim, "distance": "Cosine"}}),
    )
    .await?;
    let info = call(
        http,
        reqwest::Method::GET,
        format!("{}/collections/moved/cluster", entry.base),
        &Value::Null,
    )
    .await?;
    let holder = replica_peers(&info)?
        .into_iter()
        .next()
        .context("the shard's replica")?;
    let source = peers
        .iter()
        .find(|p| p.id == holder)
        .context("the holder is a peer")?;
    upsert_into(http, &source.base, "moved", o).await?;
    let (_, indexed) = wait_indexed_of(http, &source.base, "moved").await?;
    let raw = (o.points * o.dim * 4) as f64 / MIB;
    println!(
        "transfer: one shard of {} points x {}-d ({raw:.1} MiB of vectors, {indexed} indexed) on peer {holder}",
        o.points, o.dim
    );
    let targets = peers.iter().filter(|p| p.id != holder);
    for (method, target) in ["stream_records", "snapshot"].into_iter().zip(targets) {
        let request = json!({"replicate_shard": {"shard_id": 0, "from_peer_id": holder, "to_peer_id": target.id, "method": method}});
        let started = Instant::now();
        call(
            http,
            reqwest::Method::POST,
            format!("{}/collections/moved/cluster", source.base),
            &request,
        )
        .await?;
        let points = wait_active(http, target).await?;
        let took = started.elapsed();
        if points != o.points as u64 {
            bail!(
                "{method}: the new replica holds {points} points, not {}",
                o.points
            );
        }
        println!(
            "transfer by {method}: {:.2} s = {:.0} MiB/s of vectors (request to Active)",
            took.as_secs_f64(),
            raw / took.as_secs_f64()
        );
    }
    Ok(())
}

/// Peers holding a replica of shard 0 in a `GET /collections/{c}/cluster` answer.
fn replica_peers(info: &Value) -> Result<Vec<u64>> {
    let mut peers = Vec::new();
    if !info["local_shards"]
        .as_array()
        .context("local_shards")?
        .is_empty()
    {
        peers.push(info["peer_id"].as_u64().context("peer_id")?);
    }
    for remote in info["remote_shards"].as_array().context("remote_shards")? {
        peers.push(remote["peer_id"].as_u64().context("peer_id")?);
    }
    Ok(peers)
}

/// Waits (bounded) until `target`'s own replica of shard 0 is Active; its point count.
async fn wait_active(http: &reqwest::Client, target: &Peer) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        let info = call(
            http,
            reqwest::Method::GET,
            format!("{}/collections/moved/cluster", target.base),
            &Value::Null,
        )
        .await?;
        if let Some(local) = info["local_shards"].as_array().and_then(|l| l.first()) {
            if local["state"] == "Active" {
                return local["points_count"].as_u64().context("points_count");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!(
        "the new replica on peer {} did not become Active in 600 s",
        target.id
    )
}

/// Starts three peers (the first founds the cluster, the others join through it) and
/// waits until they agree on a leader.
pub(super) async fn start_cluster(o: &Options, http: &reqwest::Client) -> Result<Vec<Peer>> {
    let env = [("QDRANT__CLUSTER__ENABLED", "true")];
    let mut peers = Vec::new();
    let mut first_uri = None;
    for _ in 0..3 {
        let p2p = free_port()?;
        let uri = format!("http://127.0.0.1:{p2p}");
        let mut args = vec!["--uri".to_string(), uri.clone()];
        if let Some(first) = &first_uri {
            args.extend(["--bootstrap".to_string(), String::clone(first)]);
        }
        let (server, base) = start_peer(&o.server, p2p, &env, &args)?;
        wait_ready(http, &base).await?;
        first_uri.get_or_insert(uri);
        let view = call(
            http,
            reqwest::Method::GET,
            format!("{base}/cluster"),
            &Value::Null,
        )
        .await?;
        let id = view["peer_id"].as_u64().context("peer_id")?;
        peers.push(Peer { server, base, id });
    }
    for _ in 0..600 {
        let mut agreed = true;
        for peer in &peers {
            let view = call(
                http,
                reqwest::Method::GET,
                format!("{}/cluster", peer.base),
                &Value::Null,
            )
            .await?;
            agreed &= view["peers"].as_object().map(|p| p.len()) == Some(3)
                && view["raft_info"]["leader"].as_u64().is_some()
                && view["raft_info"]["is_voter"] == true;
        }
        if agreed {
            return Ok(peers);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the three peers did not agree on a cluster in 60 s")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
