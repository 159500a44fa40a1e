//! Monitoring on real processes: `GET /metrics` parsed by a real Prometheus text-format
//! parser (names, labels, values that rise with requests, the per-collection toggle),
//! `GET /telemetry` at each details level and anonymized, `GET /cluster/telemetry`,
//! `GET/DELETE /issues` (a Dead replica in a 3-peer cluster), the read key that the
//! monitoring routes need, and `/metrics` answering while a snapshot recovery runs.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::PrometheusValue;
use serde_json::{json, Value};
use support::cluster::{eventually, three_peers_with};
use support::{vectors, TestNode};

const DIM: usize = 4;

/// Checks what the lenient parser lets through: every sample belongs to a family
/// declared once with `# TYPE` before it, and every line is a comment or a sample.
fn assert_well_formed(text: &str) {
    let mut declared = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().expect("family name");
            let kind = parts.next().expect("family type");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(declared.insert(name.to_string()), "{name} declared twice");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let name = line
            .split(['{', ' '])
            .next()
            .expect("sample name")
            .to_string();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| declared.contains(*f)))
            .unwrap_or(&name);
        assert!(declared.contains(family), "sample before its TYPE: {line}");
        let value = line.rsplit(' ').next().expect("value");
        assert!(
            value.parse::<f64>().is_ok() || value == "+Inf" || value == "NaN",
            "{line}"
        );
    }
}

/// One parsed sample: its family, labels and value.
struct Sample {
    metric: String,
    labels: BTreeMap<String, String>,
    value: Prom,
}

enum Prom {
    Number(f64),
    /// `(upper bound, cumulative count)` and the total count.
    Histogram(Vec<(f64, f64)>, u64),
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// Parses an exposition with a real Prometheus text-format parser.
fn parse(text: &str) -> Vec<Sample> {
    let exposition = parse_prometheus(text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let mut out = Vec::new();
    for (name, family) in &exposition.families {
        for sample in family.iter_samples() {
            let labelset = sample.get_labelset().expect("labels");
            let labels = labelset
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let value = match &sample.value {
                PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => Prom::Number(n.as_f64()),
                PrometheusValue::Counter(c) => Prom::Number(c.value.as_f64()),
                PrometheusValue::Histogram(h) => Prom::Histogram(
                    h.buckets
                        .iter()
                        .map(|b| (b.upper_bound, b.count.as_f64()))
                        .collect(),
                    h.count.unwrap_or(0),
                ),
                PrometheusValue::Summary(_) => panic!("{name}: no summaries expected"),
            };
            out.push(Sample {
                metric: name.clone(),
                labels,
                value,
            });
        }
    }
    out
}

fn scrape(node: &TestNode, query: &str) -> Vec<Sample> {
    let resp = reqwest::blocking::get(node.url(&format!("/metrics{query}"))).expect("scrape");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .expect("content type")
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(content_type, "text/plain; version=0.0.4");
    let text = resp.text().expect("body");
    assert_well_formed(&text);
    parse(&text)
}

fn matching<'a>(samples: &'a [Sample], metric: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .collect()
}

/// The value of the one sample of `metric` whose labels include `labels`.
fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found = matching(samples, metric, labels);
    assert!(found.len() <= 1, "{metric} {labels:?} is ambiguous");
    found.first().map(|s| match &s.value {
        Prom::Number(v) => *v,
        Prom::Histogram(..) => panic!("{metric} is a histogram"),
    })
}

fn histogram_count(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found = matching(samples, metric, labels);
    assert_eq!(found.len(), 1, "{metric} {labels:?}");
    let Prom::Histogram(buckets, count) = &found[0].value else {
        panic!("{metric} is not a histogram");
    };
    let inf = buckets
        .iter()
        .find(|(bound, _)| bound.is_infinite())
        .expect("+Inf bucket");
    assert_eq!(
        inf.1, *count as f64,
        "{metric}: +Inf bucket and _count differ"
    );
    // Cumulative: no bucket counts more than a wider one.
    let mut sorted = buckets.clone();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    for pair in sorted.windows(2) {
        assert!(pair[0].1 <= pair[1].1, "{metric} is not cumulative");
    }
    inf.1
}

fn books(node: &TestNode, name: &str, count: usize) {
    node.create_collection(name, json!({"vectors": {"size": DIM, "distance": "Dot"}}));
    let points: Vec<Value> = vectors(count, DIM, 7)
        .into_iter()
        .enumerate()
        .map(|(i, v)| json!({"id": i + 1, "vector": v}))
        .collect();
    for chunk in points.chunks(500) {
        node.ok(node.put(
            &format!("/collections/{name}/points?wait=true"),
            &json!({"points": chunk}),
        ));
    }
}

const GET_COLLECTION: [(&str, &str); 2] = [("method", "GET"), ("endpoint", "/collections/{name}")];

fn with_status(status: &str) -> Vec<(&str, &str)> {
    let mut labels = GET_COLLECTION.to_vec();
    labels.push(("status", status));
    labels
}

#[test]
fn metrics_count_requests_by_route_template_and_status() {
    let node = TestNode::start();
    books(&node, "books", 10);
    for _ in 0..3 {
        node.ok(node.get("/collections/books"));
    }
    assert_eq!(node.get("/collections/missing").0, 404);

    let first = scrape(&node, "");
    assert_eq!(
        value(
            &first,
            "app_info",
            &[("name", "shoal"), ("version", "1.19.0")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&first, "app_status_recovery_mode", &[]), Some(0.0));
    assert_eq!(value(&first, "collections_total", &[]), Some(1.0));
    assert_eq!(value(&first, "collections_vector_total", &[]), Some(10.0));
    assert_eq!(value(&first, "cluster_enabled", &[]), Some(0.0));
    assert_eq!(
        value(&first, "rest_responses_total", &with_status("200")),
        Some(3.0)
    );
    assert_eq!(
        value(&first, "rest_responses_total", &with_status("404")),
        Some(1.0)
    );
    assert_eq!(
        value(&first, "rest_responses_fail_total", &with_status("200")),
        Some(0.0)
    );
    assert_eq!(
        value(&first, "rest_responses_fail_total", &with_status("404")),
        Some(1.0)
    );
    let min = value(
        &first,
        "rest_responses_min_duration_seconds",
        &with_status("200"),
    )
    .unwrap();
    let avg = value(
        &first,
        "rest_responses_avg_duration_seconds",
        &with_status("200"),
    )
    .unwrap();
    let max = value(
        &first,
        "rest_responses_max_duration_seconds",
        &with_status("200"),
    )
    .unwrap();
    assert!(min <= avg && avg <= max && max > 0.0, "{min} {avg} {max}");
    assert_eq!(
        histogram_count(
            &first,
            "rest_responses_duration_seconds",
            &with_status("200")
        ),
        3.0
    );
    // The raw path never becomes a label.
    assert!(first
        .iter()
        .all(|s| s.label("endpoint") != Some("/collections/books")));
    for name in [
        "snapshot_creation_running",
        "snapshot_recovery_running",
        "snapshot_created_total",
        "shoal_recoveries_running",
        "shoal_shard_transfers_running",
        "shoal_shard_transfer_bytes_total",
    ] {
        assert_eq!(value(&first, name, &[]), Some(0.0), "{name}");
    }

    // Counts rise; a snapshot is counted with its bytes and duration.
    node.ok(node.get("/collections/books"));
    node.ok(node.post("/collections/books/snapshots", &json!({})));
    let second = scrape(&node, "");
    assert_eq!(
        value(&second, "rest_responses_total", &with_status("200")),
        Some(4.0)
    );
    let scrapes = [
        ("method", "GET"),
        ("endpoint", "/metrics"),
        ("status", "200"),
    ];
    assert_eq!(value(&second, "rest_responses_total", &scrapes), Some(1.0));
    assert_eq!(value(&second, "snapshot_created_total", &[]), Some(1.0));
    assert_eq!(value(&second, "snapshot_creation_running", &[]), Some(0.0));
    let create = [("operation", "create")];
    assert!(value(&second, "shoal_snapshot_bytes_total", &create).unwrap() > 0.0);
    assert_eq!(
        value(&second, "shoal_snapshot_failures_total", &create),
        Some(0.0)
    );
    assert_eq!(
        histogram_count(&second, "shoal_snapshot_duration_seconds", &create),
        1.0
    );

    // A failed recovery is counted as one.
    let bad = node.put(
        "/collections/books/snapshots/recover",
        &json!({"location": "file:///nonexistent/x.snapshot"}),
    );
    assert!(bad.0 >= 400, "{bad:?}");
    let third = scrape(&node, "");
    let recover = [("operation", "recover")];
    assert_eq!(
        value(&third, "shoal_snapshot_failures_total", &recover),
        Some(1.0)
    );
    assert_eq!(
        value(&third, "shoal_recoveries_failed_total", &[]),
        Some(1.0)
    );
    assert_eq!(value(&third, "snapshot_recovery_running", &[]), Some(0.0));
}

#[test]
fn grpc_responses_are_counted_by_method() {
    let node = TestNode::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = qdrant_client::Qdrant::from_url(&format!("http://127.0.0.1:{}", node.grpc_port))
        .skip_compatibility_check()
        .build()
        .unwrap();
    runtime.block_on(async {
        client.health_check().await.expect("health check");
        client.health_check().await.expect("health check");
        assert!(client.collection_info("missing").await.is_err());
    });
    let samples = scrape(&node, "");
    let health = [("endpoint", "/qdrant.Qdrant/HealthCheck"), ("status", "0")];
    assert_eq!(value(&samples, "grpc_responses_total", &health), Some(2.0));
    assert_eq!(
        value(&samples, "grpc_responses_fail_total", &health),
        Some(0.0)
    );
    assert_eq!(
        histogram_count(&samples, "grpc_responses_duration_seconds", &health),
        2.0
    );
    // NotFound is code 5.
    let missing = [("endpoint", "/qdrant.Collections/Get"), ("status", "5")];
    assert_eq!(value(&samples, "grpc_responses_total", &missing), Some(1.0));
    assert_eq!(
        value(&samples, "grpc_responses_fail_total", &missing),
        Some(1.0)
    );

    let telemetry = node.ok(node.get("/telemetry"));
    assert_eq!(
        telemetry["requests"]["grpc"]["responses"]["/qdrant.Qdrant/HealthCheck"]["0"]["count"],
        2
    );
}

#[test]
fn per_collection_metrics_need_the_parameter_and_the_setting() {
    let node = TestNode::start();
    books(&node, "books", 7);
    let plain = scrape(&node, "");
    assert!(plain.iter().all(|s| s.metric != "collection_points"));
    let per = scrape(&node, "?per_collection=true&timeout=5");
    assert_eq!(
        value(&per, "collection_points", &[("id", "books")]),
        Some(7.0)
    );
    assert_eq!(
        value(&per, "collection_vectors", &[("id", "books")]),
        Some(7.0)
    );
    let anonymized = scrape(&node, "?per_collection=true&anonymize=true");
    let ids: Vec<&str> = anonymized
        .iter()
        .filter(|s| s.metric == "collection_points")
        .filter_map(|s| s.label("id"))
        .collect();
    assert_eq!(ids.len(), 1);
    assert_ne!(ids[0], "books");

    let off = TestNode::start_with_env(&[("QDRANT__PER_COLLECTION_METRICS_ENABLED", "false")]);
    books(&off, "books", 3);
    let samples = scrape(&off, "?per_collection=true");
    assert!(samples.iter().all(|s| s.metric != "collection_points"));
    assert_eq!(value(&samples, "collections_total", &[]), Some(1.0));
}

#[test]
fn telemetry_has_qdrants_shape_at_each_details_level() {
    let node = TestNode::start();
    books(&node, "books", 5);
    node.ok(node.get("/collections/books"));

    let level0 = node.ok(node.get("/telemetry"));
    assert!(level0["id"].is_string(), "{level0}");
    assert_eq!(level0["app"]["name"], "shoal");
    assert_eq!(level0["app"]["version"], "1.19.0");
    assert_eq!(level0["app"]["jwt_rbac"], false);
    assert!(level0["app"]["features"]["debug"].is_boolean());
    assert!(level0["app"]["startup"].is_string());
    assert_eq!(level0["collections"]["number_of_collections"], 1);
    assert!(
        level0["collections"].get("collections").is_none(),
        "{level0}"
    );
    assert_eq!(level0["cluster"]["enabled"], false);
    let get = &level0["requests"]["rest"]["responses"]["GET /collections/{name}"]["200"];
    assert_eq!(get["count"], 1, "{level0}");
    assert!(get["avg_duration_micros"].as_f64().unwrap() > 0.0);
    assert!(
        get["max_duration_micros"].as_u64().unwrap()
            >= get["min_duration_micros"].as_u64().unwrap()
    );

    let level1 = node.ok(node.get("/telemetry?details_level=1"));
    let collections = level1["collections"]["collections"]
        .as_array()
        .expect("list");
    assert_eq!(collections.len(), 1);
    assert_eq!(collections[0]["id"], "books");
    assert_eq!(collections[0]["vectors"], 5);
    assert!(level1["app"]["system"]["cores"].is_number(), "{level1}");

    let level2 = node.ok(node.get("/telemetry?details_level=2&timeout=10"));
    let full = &level2["collections"]["collections"][0];
    assert_eq!(full["config"]["params"]["vectors"]["size"], DIM);
    assert_eq!(full["shards"].as_array().unwrap().len(), 1);

    let anonymized = node.ok(node.get("/telemetry?details_level=2&anonymize=true"));
    let id = anonymized["collections"]["collections"][0]["id"]
        .as_str()
        .unwrap();
    assert_ne!(id, "books");
    assert!(
        !anonymized.to_string().contains("\"books\""),
        "{anonymized}"
    );

    let bad = node.get("/telemetry?details_level=many");
    assert_eq!(bad.0, 400, "{bad:?}");

    let cluster = node.ok(node.get("/cluster/telemetry"));
    assert_eq!(
        cluster["collections"]["books"]["shards"][0]["id"], 0,
        "{cluster}"
    );
    assert_eq!(cluster["cluster"]["enabled"], false);
    assert_eq!(
        cluster["collections"]["books"]["shards"][0]["replicas"][0]["state"],
        "Active"
    );

    assert_eq!(node.ok(node.get("/issues")), json!({"issues": []}));
    assert_eq!(node.ok(node.delete("/issues")), json!(true));
}

#[test]
fn monitoring_routes_need_a_read_key() {
    let node = TestNode::start_with_env(&[
        ("QDRANT__SERVICE__API_KEY", "full-key"),
        ("QDRANT__SERVICE__READ_ONLY_API_KEY", "read-key"),
    ]);
    let http = reqwest::blocking::Client::new();
    let status = |method: reqwest::Method, path: &str, key: Option<&str>| {
        let mut request = http.request(method, node.url(path));
        if let Some(key) = key {
            request = request.header("api-key", key);
        }
        request.send().expect("request").status().as_u16()
    };
    for path in ["/metrics", "/telemetry", "/cluster/telemetry", "/issues"] {
        assert_eq!(status(reqwest::Method::GET, path, None), 401, "{path}");
        assert_eq!(
            status(reqwest::Method::GET, path, Some("read-key")),
            200,
            "{path}"
        );
    }
    assert_eq!(
        status(reqwest::Method::DELETE, "/issues", Some("read-key")),
        403
    );
    assert_eq!(
        status(reqwest::Method::DELETE, "/issues", Some("full-key")),
        200
    );
    // Refusals are counted too.
    let text = http
        .get(node.url("/metrics"))
        .header("api-key", "read-key")
        .send()
        .unwrap()
        .text()
        .unwrap();
    let samples = parse(&text);
    let refused = [
        ("method", "GET"),
        ("endpoint", "/metrics"),
        ("status", "401"),
    ];
    assert_eq!(value(&samples, "rest_responses_total", &refused), Some(1.0));
}

/// Starts an upload recovery of `snapshot` and sends all but its last bytes, so the
/// recovery runs (reading the body) until [`finish_upload`].
fn start_upload(node: &TestNode, name: &str, snapshot: &[u8]) -> (TcpStream, Vec<u8>) {
    let boundary = "shoalTelemetryBoundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"snapshot\"; filename=\"s.snapshot\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(snapshot);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST /collections/{name}/snapshots/upload?wait=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", node.http_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let held = body.split_off(body.len() / 2);
    stream.write_all(&body).unwrap();
    (stream, held)
}

fn finish_upload(mut stream: TcpStream, rest: &[u8]) -> String {
    stream.write_all(rest).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
}

#[test]
fn metrics_answer_while_a_snapshot_recovery_runs() {
    let node = TestNode::start();
    books(&node, "big", 3000);
    let desc = node.ok(node.post("/collections/big/snapshots", &json!({})));
    let file = desc["name"].as_str().unwrap();
    let snapshot = node.download(&format!("/collections/big/snapshots/{file}"));

    let (stream, rest) = start_upload(&node, "big", &snapshot);
    // Bounded: the recovery is running once the upload's part has started.
    let running = eventually("the recovery shows as running in /metrics", || {
        let samples = scrape(&node, "?per_collection=true");
        (value(&samples, "snapshot_recovery_running", &[]) == Some(1.0)).then_some(samples)
    });
    assert_eq!(value(&running, "shoal_recoveries_running", &[]), Some(1.0));
    assert_eq!(
        value(&running, "collection_points", &[("id", "big")]),
        Some(3000.0)
    );
    // Telemetry answers too, with the collection counted.
    let telemetry = node.ok(node.get("/telemetry?details_level=1"));
    assert_eq!(telemetry["collections"]["collections"][0]["vectors"], 3000);

    let answer = finish_upload(stream, &rest);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let done = scrape(&node, "");
    assert_eq!(value(&done, "snapshot_recovery_running", &[]), Some(0.0));
    assert_eq!(
        value(&done, "shoal_recoveries_finished_total", &[]),
        Some(1.0)
    );
    let recover = [("operation", "recover")];
    assert!(value(&done, "shoal_snapshot_bytes_total", &recover).unwrap() > 0.0);
    assert_eq!(
        histogram_count(&done, "shoal_snapshot_duration_seconds", &recover),
        1.0
    );
    assert_eq!(node.count("big"), 3000);
}

#[test]
fn a_dead_replica_is_an_issue_until_dismissed() {
    let mut peers = three_peers_with(&[]);
    peers[0].create_collection(
        "c",
        json!({"vectors": {"size": DIM, "distance": "Dot"}, "shard_number": 1, "replication_factor": 3}),
    );
    let ids: Vec<u64> = peers
        .iter()
        .map(|p| p.ok(p.get("/cluster"))["peer_id"].as_u64().unwrap())
        .collect();
    let samples = scrape(&peers[0], "");
    assert_eq!(value(&samples, "cluster_enabled", &[]), Some(1.0));
    assert_eq!(value(&samples, "cluster_peers_total", &[]), Some(3.0));
    assert_eq!(value(&samples, "cluster_voter", &[]), Some(1.0));
    assert!(value(&samples, "cluster_term", &[]).unwrap() >= 1.0);
    assert!(value(&samples, "cluster_commit", &[]).unwrap() >= 1.0);
    let telemetry = peers[0].ok(peers[0].get("/telemetry?details_level=2"));
    assert_eq!(telemetry["cluster"]["enabled"], true);
    assert_eq!(telemetry["cluster"]["status"]["number_of_peers"], 3);
    assert_eq!(telemetry["cluster"]["peers"].as_object().unwrap().len(), 3);
    let cluster = peers[0].ok(peers[0].get("/cluster/telemetry"));
    assert_eq!(cluster["cluster"]["number_of_peers"], 3, "{cluster}");
    assert_eq!(
        cluster["collections"]["c"]["shards"][0]["replicas"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // A write while the third peer is down makes its replica Dead.
    let killed = ids[2];
    peers[2].kill9();
    let issues = eventually("the Dead replica is an issue", || {
        let points: Vec<Value> = vectors(5, DIM, 3)
            .into_iter()
            .enumerate()
            .map(|(i, v)| json!({"id": i + 1, "vector": v}))
            .collect();
        let _ = peers[0].put(
            "/collections/c/points?wait=true",
            &json!({"points": points}),
        );
        let issues = peers[0].ok(peers[0].get("/issues"));
        let list = issues["issues"].as_array()?.clone();
        (!list.is_empty()).then_some(list)
    });
    let ids_found: BTreeMap<String, Value> = issues
        .iter()
        .map(|i| (i["id"].as_str().unwrap().to_string(), i.clone()))
        .collect();
    let dead = &ids_found[&format!("DEAD_REPLICA/c/0/{killed}")];
    assert_eq!(dead["related_collection"], "c");
    assert!(dead["description"].as_str().unwrap().contains("Dead"));
    assert!(dead["timestamp"].is_string());
    assert!(dead["solution"]["refactor"].is_string(), "{dead}");
    let samples = scrape(&peers[0], "");
    assert_eq!(value(&samples, "shoal_dead_replicas", &[]), Some(1.0));

    assert_eq!(peers[0].ok(peers[0].delete("/issues")), json!(true));
    let after = peers[0].ok(peers[0].get("/issues"));
    assert!(
        after["issues"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["id"] != format!("DEAD_REPLICA/c/0/{killed}")),
        "{after}"
    );

    // The peer comes back and a survivor refills its replica by a transfer, which the
    // source counts with the bytes it sent.
    peers[2].restart_after_kill9();
    let (finished, bytes) = eventually("a transfer to the returning peer finished", || {
        let mut finished = 0.0;
        let mut bytes = 0.0;
        for peer in &peers[..2] {
            let samples = scrape(peer, "");
            finished += value(&samples, "shoal_shard_transfers_finished_total", &[])?;
            bytes += value(&samples, "shoal_shard_transfer_bytes_total", &[])?;
        }
        (finished >= 1.0).then_some((finished, bytes))
    });
    assert!(bytes > 0.0, "{finished} transfers sent no bytes");
    eventually("the replica is no longer an issue", || {
        let issues = peers[0].ok(peers[0].get("/issues"));
        issues["issues"].as_array()?.is_empty().then_some(())
    });
    let samples = scrape(&peers[0], "");
    assert_eq!(value(&samples, "shoal_dead_replicas", &[]), Some(0.0));
}
