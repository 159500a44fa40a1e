//! `--mode grpc`: the same work over REST (JSON) and over the public gRPC API
//! (protobuf), one after the other against one server: upserts of `--batch`-point
//! batches with `wait=true`, then single-client search latency (REST and gRPC queries
//! alternate). Vectors are made before
//! the clock starts; encoding each request is part of what is measured, as it is for
//! any client.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{json, Value};
use shoal::api::grpc::proto;
use shoal::api::grpc::proto::points_client::PointsClient;
use tonic::transport::Channel;

use super::{call, DataGen, Options, Rng};

/// Collection body: no index, so that no index build competes with the measurements.
fn collection(dim: usize) -> Value {
    json!({"vectors": {"size": dim, "distance": "Cosine"}, "optimizers_config": {"indexing_threshold": 0}})
}

pub async fn run(o: &Options, http: &reqwest::Client, base: &str, grpc_url: &str) -> Result<()> {
    let channel = Channel::from_shared(grpc_url.to_string())?
        .connect()
        .await
        .with_context(|| format!("connecting to gRPC at {grpc_url}"))?;
    let mut points = PointsClient::new(channel).max_decoding_message_size(usize::MAX);
    for name in ["bench_rest", "bench_grpc"] {
        let _ = call(
            http,
            reqwest::Method::DELETE,
            format!("{base}/collections/{name}"),
            &Value::Null,
        )
        .await;
        call(
            http,
            reqwest::Method::PUT,
            format!("{base}/collections/{name}"),
            &collection(o.dim),
        )
        .await?;
    }
    let data = DataGen::new(&o.data, o.dim)?;
    let mut rng = Rng(0x9E37_79B9);
    let vectors: Vec<Vec<f32>> = (0..o.points).map(|_| data.vector(&mut rng)).collect();
    println!(
        "shoal-bench grpc: {} points x {}-d in batches of {}, then {} searches (limit 10), one client",
        o.points, o.dim, o.batch, o.queries
    );

    let rest_took = upsert_rest(http, base, &vectors, o.batch).await?;
    let grpc_took = upsert_grpc(&mut points, &vectors, o.batch).await?;
    let (rest_rate, grpc_rate) = (
        o.points as f64 / rest_took.as_secs_f64(),
        o.points as f64 / grpc_took.as_secs_f64(),
    );
    println!(
        "upsert REST: {rest_rate:.0} points/s ({:.1} s)",
        rest_took.as_secs_f64()
    );
    println!(
        "upsert gRPC: {grpc_rate:.0} points/s ({:.1} s), {:.2}x REST",
        grpc_took.as_secs_f64(),
        grpc_rate / rest_rate
    );

    let queries: Vec<Vec<f32>> = (0..o.queries).map(|_| data.vector(&mut rng)).collect();
    // Warm both paths once, then alternate REST and gRPC query by query (in turn
    // first), so that a busy moment of the machine falls on both alike.
    search_rest(http, base, &queries[..1]).await?;
    search_grpc(&mut points, &queries[..1]).await?;
    let (mut rest, mut grpc) = (Vec::new(), Vec::new());
    for (i, q) in queries.chunks(1).enumerate() {
        if i % 2 == 0 {
            rest.extend(search_rest(http, base, q).await?);
            grpc.extend(search_grpc(&mut points, q).await?);
        } else {
            grpc.extend(search_grpc(&mut points, q).await?);
            rest.extend(search_rest(http, base, q).await?);
        }
    }
    println!(
        "search REST: mean {:.3} ms, p50 {:.3} ms, p99 {:.3} ms",
        mean(&rest),
        pct(&rest, 50),
        pct(&rest, 99)
    );
    println!(
        "search gRPC: mean {:.3} ms, p50 {:.3} ms, p99 {:.3} ms ({:.2}x REST mean)",
        mean(&grpc),
        pct(&grpc, 50),
        pct(&grpc, 99),
        mean(&grpc) / mean(&rest)
    );
    Ok(())
}

async fn upsert_rest(
    http: &reqwest::Client,
    base: &str,
    vectors: &[Vec<f32>],
    batch: usize,
) -> Result<Duration> {
    let started = Instant::now();
    for (chunk_no, chunk) in vectors.chunks(batch).enumerate() {
        let first = chunk_no * batch;
        let points: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(
                |(i, v)| json!({"id": first + i, "vector": v, "payload": {"n": (first + i) % 100}}),
            )
            .collect();
        let url = format!("{base}/collections/bench_rest/points?wait=true");
        call(
            http,
            reqwest::Method::PUT,
            url,
            &json!({ "points": points }),
        )
        .await?;
    }
    Ok(started.elapsed())
}

async fn upsert_grpc(
    client: &mut PointsClient<Channel>,
    vectors: &[Vec<f32>],
    batch: usize,
) -> Result<Duration> {
    use proto::point_id::PointIdOptions;
    use proto::value::Kind;
    use proto::vectors::VectorsOptions;
    let started = Instant::now();
    for (chunk_no, chunk) in vectors.chunks(batch).enumerate() {
        let first = chunk_no * batch;
        let points = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let id = (first + i) as u64;
                proto::PointStruct {
                    id: Some(proto::PointId {
                        point_id_options: Some(PointIdOptions::Num(id)),
                    }),
                    payload: [(
                        "n".to_string(),
                        proto::Value {
                            kind: Some(Kind::IntegerValue((id % 100) as i64)),
                        },
                    )]
                    .into_iter()
                    .collect(),
                    vectors: Some(proto::Vectors {
                        vectors_options: Some(VectorsOptions::Vector(proto::Vector {
                            vector: Some(proto::vector::Vector::Dense(proto::DenseVector {
                                data: v.clone(),
                            })),
                            ..Default::default()
                        })),
                    }),
                }
            })
            .collect();
        client
            .upsert(proto::UpsertPoints {
                collection_name: "bench_grpc".into(),
                wait: Some(true),
                points,
                ..Default::default()
            })
            .await?;
    }
    Ok(started.elapsed())
}

/// Milliseconds per query.
async fn search_rest(http: &reqwest::Client, base: &str, queries: &[Vec<f32>]) -> Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(queries.len());
    for q in queries {
        let started = Instant::now();
        let url = format!("{base}/collections/bench_rest/points/search");
        call(
            http,
            reqwest::Method::POST,
            url,
            &json!({"vector": q, "limit": 10}),
        )
        .await?;
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(latencies)
}

async fn search_grpc(client: &mut PointsClient<Channel>, queries: &[Vec<f32>]) -> Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(queries.len());
    for q in queries {
        let started = Instant::now();
        client
            .search(proto::SearchPoints {
                collection_name: "bench_rest".into(),
                vector: q.clone(),
                limit: 10,
                ..Default::default()
            })
            .await?;
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(latencies)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn pct(values: &[f64], p: usize) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[(sorted.len() * p / 100).min(sorted.len().saturating_sub(1))]
}
