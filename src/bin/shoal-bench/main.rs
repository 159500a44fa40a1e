//! shoal-bench: loads random points into a shoal node over REST and measures upsert
//! throughput, exact and approximate search throughput, recall@10 of approximate
//! search against exact results, and the server's peak RSS.
//!
//! Usage: `cargo run --release --bin shoal-bench -- [--points N] [--dim D] [--batch B]
//! [--queries Q] [--clients C] [--server PATH] [--url URL] [--data embedding|uniform]
//! [--hnsw-ef EF] [--mode search|snapshot|grpc|cluster|cluster-recover] [--grpc-url URL]
//! [--max-wait SECONDS]`. Without `--url` it starts `target/release/shoal` (or
//! `--server`) on loopback ports with a temporary storage directory, so the figures
//! include nothing but shoal and the loopback network. Searches are measured once the
//! collection's status is green (no index build or segment merge due or running),
//! waiting at most `--max-wait` (default 1800 s).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

mod cluster;
mod cluster_recover;
mod grpc;
mod snapshots;

struct Options {
    points: usize,
    dim: usize,
    batch: usize,
    queries: usize,
    clients: usize,
    url: Option<String>,
    server: PathBuf,
    /// `embedding` (default): vectors with 32 latent dimensions spread over `dim`, the
    /// shape of real embeddings; `uniform`: independent uniform components, the
    /// worst case for any graph index (nearest neighbours are barely nearer than the rest).
    data: String,
    hnsw_ef: usize,
    /// `search` (default): load, then search figures; `snapshot`: load (no index), then
    /// snapshot create and recover figures; `grpc`: the same upserts and searches over
    /// REST and over the public gRPC API, side by side; `cluster`: load, then the same on
    /// a 3-peer cluster (metadata commit latency, replicated writes, shard transfers).
    mode: String,
    /// gRPC address for `--mode grpc` with `--url` (default: the started server's port).
    grpc_url: Option<String>,
    /// Longest wait for the collection to turn green before searching.
    max_wait_secs: u64,
    /// `--mode cluster-recover`: recoveries timed from the one snapshot (each round a
    /// fresh single node, then a fresh cluster).
    rounds: usize,
}

const USAGE: &str = "usage: shoal-bench [--points N] [--dim D] [--batch B] [--queries Q] \
[--clients C] [--server PATH] [--url URL] [--data embedding|uniform] [--hnsw-ef EF] \
[--mode search|snapshot|grpc|cluster|cluster-recover] [--grpc-url URL] [--max-wait SECONDS] \
[--rounds N (cluster-recover, default 3)]";

fn parse_options() -> Result<Options> {
    let mut o = Options {
        points: 100_000,
        dim: 128,
        batch: 1_000,
        queries: 200,
        clients: 1,
        url: None,
        server: PathBuf::from("target/release/shoal"),
        data: "embedding".to_string(),
        hnsw_ef: 128,
        mode: "search".to_string(),
        grpc_url: None,
        max_wait_secs: 1800,
        rounds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--points" => o.points = value()?.parse()?,
            "--dim" => o.dim = value()?.parse()?,
            "--batch" => o.batch = value()?.parse()?,
            "--queries" => o.queries = value()?.parse()?,
            "--clients" => o.clients = value()?.parse()?,
            "--url" => o.url = Some(value()?),
            "--server" => o.server = PathBuf::from(value()?),
            "--data" => o.data = value()?,
            "--hnsw-ef" => o.hnsw_ef = value()?.parse()?,
            "--mode" => o.mode = value()?,
            "--grpc-url" => o.grpc_url = Some(value()?),
            "--max-wait" => o.max_wait_secs = value()?.parse()?,
            "--rounds" => o.rounds = value()?.parse::<usize>()?.max(1),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    // The server runs in a temporary directory: a relative path must not be read from there.
    if let Ok(absolute) = std::fs::canonicalize(&o.server) {
        o.server = absolute;
    }
    Ok(o)
}

/// xorshift64*: fast, deterministic, good enough for benchmark vectors.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    fn vector(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.next_f32()).collect()
    }
}

/// Latent dimensions of embedding-like data.
const LATENT: usize = 32;

/// Makes benchmark vectors of the chosen shape; the same seed gives the same vector.
struct DataGen {
    dim: usize,
    /// `dim x LATENT` projection for embedding-like data; empty for uniform data.
    projection: Vec<f32>,
}

impl DataGen {
    fn new(kind: &str, dim: usize) -> Result<DataGen> {
        let projection = match kind {
            "uniform" => Vec::new(),
            "embedding" => Rng(0xC0FFEE).vector(dim * LATENT),
            other => bail!("--data must be `embedding` or `uniform`, not `{other}`"),
        };
        Ok(DataGen { dim, projection })
    }

    fn vector(&self, rng: &mut Rng) -> Vec<f32> {
        if self.projection.is_empty() {
            return rng.vector(self.dim);
        }
        let latent = rng.vector(LATENT);
        (0..self.dim)
            .map(|d| {
                let row = &self.projection[d * LATENT..(d + 1) * LATENT];
                row.iter().zip(&latent).map(|(a, b)| a * b).sum::<f32>() + 0.05 * rng.next_f32()
            })
            .collect()
    }
}

struct Server {
    child: Child,
    dir: tempfile::TempDir,
    /// The public gRPC port the server was started with.
    grpc_port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_server(binary: &PathBuf) -> Result<(Server, String)> {
    start_peer(binary, free_port()?, &[], &[])
}

/// A server with `p2p_port` as its peer port, extra environment and arguments.
fn start_peer(
    binary: &PathBuf,
    p2p_port: u16,
    env: &[(&str, &str)],
    args: &[String],
) -> Result<(Server, String)> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let grpc_port = free_port()?;
    let child = Command::new(binary)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .env("QDRANT__SERVICE__HOST", "127.0.0.1")
        .env("QDRANT__SERVICE__HTTP_PORT", port.to_string())
        .env("QDRANT__SERVICE__GRPC_PORT", grpc_port.to_string())
        .env("QDRANT__CLUSTER__P2P__PORT", p2p_port.to_string())
        .env("QDRANT__STORAGE__STORAGE_PATH", dir.path().join("storage"))
        .env(
            "QDRANT__STORAGE__SNAPSHOTS_PATH",
            dir.path().join("snapshots"),
        )
        .env(
            "RUST_LOG",
            std::env::var("SHOAL_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (build it with cargo build --release)",
                binary.display()
            )
        })?;
    Ok((
        Server {
            child,
            dir,
            grpc_port,
        },
        format!("http://127.0.0.1:{port}"),
    ))
}

/// Peak resident set (VmHWM) of a process, in bytes.
/// CPU time (user + system, every thread) a process has used so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at field 3.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the command name.
    (ticks(11) + ticks(12)) as f64 / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: &Value,
) -> Result<Value> {
    let resp = http.request(method, &url).json(body).send().await?;
    let status = resp.status();
    let value: Value = resp.json().await?;
    if !status.is_success() {
        bail!("{url}: {status}: {value}");
    }
    Ok(value["result"].clone())
}

async fn wait_ready(http: &reqwest::Client, base: &str) -> Result<()> {
    for _ in 0..600 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("server at {base} did not become ready in 60 s")
}

async fn upsert_all(http: &reqwest::Client, base: &str, o: &Options) -> Result<Duration> {
    upsert_into(http, base, "bench", o).await
}

/// Loads `o.points` points into `collection` with `o.clients` concurrent clients.
async fn upsert_into(
    http: &reqwest::Client,
    base: &str,
    collection: &str,
    o: &Options,
) -> Result<Duration> {
    let started = Instant::now();
    let batches: Vec<usize> = (0..o.points).step_by(o.batch).collect();
    let mut tasks = Vec::new();
    for client in 0..o.clients {
        let mine: Vec<usize> = batches
            .iter()
            .copied()
            .skip(client)
            .step_by(o.clients)
            .collect();
        let (http, base, batch, total) = (http.clone(), base.to_string(), o.batch, o.points);
        let url = format!("{base}/collections/{collection}/points?wait=true");
        let data = DataGen::new(&o.data, o.dim)?;
        tasks.push(tokio::spawn(async move {
            for start in mine {
                let mut rng = Rng(0x9E37_79B9 ^ start as u64);
                let end = (start + batch).min(total);
                let points: Vec<Value> = (start..end)
                    .map(|id| json!({"id": id, "vector": data.vector(&mut rng), "payload": {"n": id % 100}}))
                    .collect();
                call(&http, reqwest::Method::PUT, url.clone(), &json!({"points": points}))
                    .await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

async fn search(
    http: &reqwest::Client,
    base: &str,
    queries: &[Vec<f32>],
    exact: bool,
    ef: usize,
) -> Result<(Duration, Vec<Vec<u64>>)> {
    let started = Instant::now();
    let mut results = Vec::with_capacity(queries.len());
    for q in queries {
        let body = json!({"vector": q, "limit": 10, "params": {"exact": exact, "hnsw_ef": ef}});
        let hits = call(
            http,
            reqwest::Method::POST,
            format!("{base}/collections/bench/points/search"),
            &body,
        )
        .await?;
        results.push(
            hits.as_array()
                .context("hits")?
                .iter()
                .filter_map(|h| h["id"].as_u64())
                .collect(),
        );
    }
    Ok((started.elapsed(), results))
}

/// Waits (bounded) until the bench collection is green; the wait and the indexed count.
async fn wait_indexed(http: &reqwest::Client, base: &str) -> Result<(Duration, u64)> {
    wait_indexed_of(http, base, "bench").await
}

/// [`wait_indexed`] for any collection.
async fn wait_indexed_of(
    http: &reqwest::Client,
    base: &str,
    collection: &str,
) -> Result<(Duration, u64)> {
    let settled = wait_green(http, base, collection, Duration::from_secs(1800)).await?;
    Ok((settled.waited, settled.indexed))
}

/// What the wait for background optimizations saw.
struct Settled {
    waited: Duration,
    green: bool,
    indexed: u64,
    segments: u64,
}

/// Waits (bounded: at most `max_wait`) until `collection` reports status `green`: no
/// index build or segment merge due or running, so searches measure the settled
/// collection.
async fn wait_green(
    http: &reqwest::Client,
    base: &str,
    collection: &str,
    max_wait: Duration,
) -> Result<Settled> {
    let started = Instant::now();
    loop {
        let info = call(
            http,
            reqwest::Method::GET,
            format!("{base}/collections/{collection}"),
            &Value::Null,
        )
        .await?;
        let green = info["status"] == "green";
        if green || started.elapsed() >= max_wait {
            return Ok(Settled {
                waited: started.elapsed(),
                green,
                indexed: info["indexed_vectors_count"].as_u64().unwrap_or(0),
                segments: info["segments_count"].as_u64().unwrap_or(0),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The benchmark collection; the snapshot mode turns indexing off so that no index
/// build competes with the measured snapshot work.
fn collection_body(o: &Options) -> Value {
    if o.mode == "cluster-recover" {
        json!({"vectors": {"size": o.dim, "distance": "Cosine"}, "shard_number": 3, "replication_factor": 2})
    } else if o.mode == "snapshot" {
        json!({"vectors": {"size": o.dim, "distance": "Cosine"}, "optimizers_config": {"indexing_threshold": 0}})
    } else {
        json!({"vectors": {"size": o.dim, "distance": "Cosine"}})
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let o = parse_options()?;
    let server = match &o.url {
        Some(_) => None,
        None => Some(start_server(&o.server)?),
    };
    let base = match (&o.url, &server) {
        (Some(url), _) => url.clone(),
        (None, Some((_, url))) => url.clone(),
        (None, None) => unreachable!("a server is started when no --url is given"),
    };
    let pid = server.as_ref().map(|(s, _)| s.child.id());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    wait_ready(&http, &base).await?;

    if o.mode == "grpc" {
        let grpc_url = match (&o.grpc_url, &server) {
            (Some(url), _) => url.clone(),
            (None, Some((s, _))) => format!("http://127.0.0.1:{}", s.grpc_port),
            (None, None) => bail!("--mode grpc with --url needs --grpc-url"),
        };
        return grpc::run(&o, &http, &base, &grpc_url).await;
    }

    let _ = call(
        &http,
        reqwest::Method::DELETE,
        format!("{base}/collections/bench"),
        &Value::Null,
    )
    .await;
    call(
        &http,
        reqwest::Method::PUT,
        format!("{base}/collections/bench"),
        &collection_body(&o),
    )
    .await?;

    println!(
        "shoal-bench: {} points x {}-d ({} data), batches of {}, {} client(s), hnsw_ef {}",
        o.points, o.dim, o.data, o.batch, o.clients, o.hnsw_ef
    );
    let took = upsert_all(&http, &base, &o).await?;
    println!(
        "upsert: {:.0} points/s ({:.1} s)",
        o.points as f64 / took.as_secs_f64(),
        took.as_secs_f64()
    );
    if o.mode == "cluster" {
        drop(server);
        return cluster::run(&o, &http, o.points as f64 / took.as_secs_f64()).await;
    }
    if o.mode == "cluster-recover" {
        let (server, _) = server
            .as_ref()
            .context("--mode cluster-recover starts its own servers; drop --url")?;
        return cluster_recover::run(&o, &http, &base, server).await;
    }
    if o.mode == "snapshot" {
        let (server, _) = server
            .as_ref()
            .context("--mode snapshot starts its own servers; drop --url")?;
        return snapshots::run(&o, &http, &base, server).await;
    }

    let mut rng = Rng(42);
    let data = DataGen::new(&o.data, o.dim)?;
    let queries: Vec<Vec<f32>> = (0..o.queries).map(|_| data.vector(&mut rng)).collect();
    // Index builds and merges run in the background; measure searches only once the
    // collection is green, so both figures see the settled collection on an idle machine.
    let settled = wait_green(&http, &base, "bench", Duration::from_secs(o.max_wait_secs)).await?;
    println!(
        "optimizations: {} after {:.1} s ({} vectors indexed, {} segments)",
        if settled.green {
            "green"
        } else {
            "STILL YELLOW (figures below are taken mid-optimization)"
        },
        settled.waited.as_secs_f64(),
        settled.indexed,
        settled.segments
    );
    let (exact_took, exact) = search(&http, &base, &queries, true, o.hnsw_ef).await?;
    println!(
        "exact search: {:.0} queries/s",
        o.queries as f64 / exact_took.as_secs_f64()
    );
    let (approx_took, approx) = search(&http, &base, &queries, false, o.hnsw_ef).await?;
    let found: usize = exact
        .iter()
        .zip(&approx)
        .map(|(e, a)| a.iter().filter(|id| e.contains(id)).count())
        .sum();
    let recall = found as f64 / exact.iter().map(Vec::len).sum::<usize>().max(1) as f64;
    println!(
        "approximate search: {:.0} queries/s, recall@10 {:.4}, {:.1}x exact",
        o.queries as f64 / approx_took.as_secs_f64(),
        recall,
        exact_took.as_secs_f64() / approx_took.as_secs_f64()
    );
    if let Some(rss) = pid.and_then(peak_rss) {
        let raw = (o.points * o.dim * 4) as f64;
        let budget = 1.5 * raw + 100.0 * 1024.0 * 1024.0;
        println!(
            "server peak RSS: {:.1} MiB (raw vectors {:.1} MiB, budget 1.5x + 100 MiB = {:.1} MiB)",
            rss as f64 / 1048576.0,
            raw / 1048576.0,
            budget / 1048576.0
        );
    }
    Ok(())
}
