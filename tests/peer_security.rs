//! The peer port's own protection (issue 10 item 8): the cluster secret
//! (`cluster.p2p.api_key`) that every peer call must carry, and TLS / mTLS on the peer port
//! (`cluster.p2p.enable_tls`, `tls.ca_cert`, `service.verify_https_client_certificate`),
//! and client certificates on the public TLS ports.
//!
//! Raw calls are made with the crate's generated peer clients, as an attacker on the
//! network would; that each refused call would have had an effect is shown by the same
//! call with the secret, which does.

mod support;

use std::time::Duration;

use serde_json::json;
use shoal::replication::remote::encode_op;
use shoal::shard::ops::{PointSelector, ShardOp};
use shoal::transport::proto::raft_client::RaftClient;
use shoal::transport::proto::shards_client::ShardsClient;
use shoal::transport::proto::{
    JoinRequest, RaftMessage, ShardOpRequest, ShardReadRequest, SnapshotChunk,
};
use shoal::transport::PEER_KEY_HEADER;
use shoal::types::PointId;
use support::cluster::{
    clustered_with, peer_id, stored_counts, wait_converged, wait_for_agreement, wait_visible,
};
use support::TestNode;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

const SECRET: &str = "peer-secret-for-tests-0123";
const COLLECTION: &str = "guarded";
const POINTS: u64 = 40;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A peer URI of `node` with `scheme`.
fn uri(scheme: &str, node: &TestNode) -> String {
    format!("{scheme}://127.0.0.1:{}", node.p2p_port)
}

/// Three peers with `env`, reached at `scheme://` URIs, once they agree.
fn three_peers(scheme: &str, env: &[(&str, &str)]) -> [TestNode; 3] {
    let mut first = clustered_with(env);
    first.launch(&["--uri".to_string(), uri(scheme, &first)]);
    let join = |first: &TestNode| {
        let mut node = clustered_with(env);
        let args = vec![
            "--uri".to_string(),
            uri(scheme, &node),
            "--bootstrap".to_string(),
            uri(scheme, first),
        ];
        node.launch(&args);
        node
    };
    let (second, third) = (join(&first), join(&first));
    let peers = [first, second, third];
    wait_for_agreement(&peers.iter().collect::<Vec<_>>(), 3);
    peers
}

/// A one-shard collection replicated on all three peers with `POINTS` points written
/// through the first; returns once every replica holds them all.
fn replicated_collection(peers: &[TestNode; 3]) {
    let (status, body) = peers[0].put(
        &format!("/collections/{COLLECTION}"),
        &json!({
            "vectors": {"size": 4, "distance": "Dot"},
            "shard_number": 1,
            "replication_factor": 3
        }),
    );
    assert_eq!(status, 200, "{body}");
    for peer in peers {
        wait_visible(peer, COLLECTION);
    }
    let points: Vec<_> = (0..POINTS)
        .map(|i| json!({"id": i, "vector": [i as f32, 1.0, 2.0, 3.0], "payload": {"i": i}}))
        .collect();
    let (status, body) = peers[0].put(
        &format!("/collections/{COLLECTION}/points?wait=true"),
        &json!({ "points": points }),
    );
    assert_eq!(status, 200, "{body}");
    let counts = wait_converged(&peers.iter().collect::<Vec<_>>(), COLLECTION);
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|c| *c == POINTS), "{counts:?}");
    // Reads agree on every peer.
    let expected = peers[0].points(COLLECTION);
    assert_eq!(expected.len() as u64, POINTS);
    for peer in &peers[1..] {
        assert_eq!(peer.points(COLLECTION), expected);
    }
}

/// `(peer id → points stored)` of the collection's replicas.
fn counts(peers: &[TestNode; 3]) -> Vec<u64> {
    stored_counts(&peers.iter().collect::<Vec<_>>(), COLLECTION)
        .into_values()
        .collect()
}

/// A request with `key` (if any) as the peer key metadata.
fn keyed<T>(message: T, key: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert(PEER_KEY_HEADER, key.parse().unwrap());
    }
    request
}

fn delete_request(ids: &[u64]) -> ShardOpRequest {
    let op = ShardOp::Delete(PointSelector::Ids(
        ids.iter().map(|i| PointId::Num(*i)).collect(),
    ));
    ShardOpRequest {
        collection: COLLECTION.to_string(),
        shard_id: 0,
        op: encode_op(&op),
        wait: true,
        min_applied_index: 0,
    }
}

fn code<T>(answer: Result<T, tonic::Status>) -> Code {
    match answer {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn plain_channel(node: &TestNode) -> Channel {
    Endpoint::from_shared(uri("http", node))
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .expect("peer port reachable")
}

#[test]
fn the_cluster_secret_guards_every_peer_call() {
    let peers = three_peers("http", &[("QDRANT__CLUSTER__P2P__API_KEY", SECRET)]);
    // With the secret set everywhere the cluster forms, writes replicate, reads agree.
    replicated_collection(&peers);
    let target = &peers[2];

    runtime().block_on(async {
        let channel = plain_channel(target).await;
        let mut shards = ShardsClient::new(channel.clone());
        let mut raft = RaftClient::new(channel);
        for key in [
            None,
            Some("wrong-secret"),
            Some(&SECRET[..SECRET.len() - 1]),
        ] {
            assert_eq!(
                code(shards.apply(keyed(delete_request(&[0, 1, 2]), key)).await),
                Code::Unauthenticated,
                "Shards/Apply with {key:?}"
            );
            let read = ShardReadRequest {
                collection: COLLECTION.to_string(),
                shard_id: 0,
                read: b"{}".to_vec(),
                min_applied_index: 0,
            };
            assert_eq!(
                code(shards.read(keyed(read, key)).await),
                Code::Unauthenticated,
                "Shards/Read with {key:?}"
            );
            let join = JoinRequest {
                peer_id: 999_999,
                uri: "http://127.0.0.1:9".to_string(),
                p2p_port: 9,
            };
            assert_eq!(
                code(raft.join(keyed(join, key)).await),
                Code::Unauthenticated,
                "Raft/Join with {key:?}"
            );
            let garbage = RaftMessage {
                message: vec![0xff; 16],
            };
            assert_eq!(
                code(raft.send(keyed(garbage, key)).await),
                Code::Unauthenticated,
                "Raft/Send with {key:?}"
            );
            let chunks = futures::stream::iter(Vec::<SnapshotChunk>::new());
            assert_eq!(
                code(shards.install_snapshot(keyed(chunks, key)).await),
                Code::Unauthenticated,
                "Shards/InstallSnapshot with {key:?}"
            );
        }
    });
    // Nothing happened: every replica still has every point, the membership is the same.
    assert_eq!(counts(&peers), vec![POINTS; 3]);
    wait_for_agreement(&peers.iter().collect::<Vec<_>>(), 3);
    assert!(
        target
            .log()
            .contains("refused a call on the peer port (missing or wrong cluster.p2p.api_key)"),
        "the refusal is logged\n{}",
        target.log()
    );

    // The same delete with the secret does take effect (on that replica alone, which is
    // why the port must be guarded): the refused calls were refused, not merely invalid.
    runtime().block_on(async {
        let mut shards = ShardsClient::new(plain_channel(target).await);
        let answer = shards
            .apply(keyed(delete_request(&[0, 1, 2]), Some(SECRET)))
            .await;
        assert_eq!(code(answer), Code::Ok);
    });
    let target_id = peer_id(target);
    let after = stored_counts(&peers.iter().collect::<Vec<_>>(), COLLECTION);
    assert_eq!(after[&(0, target_id)], POINTS - 3, "{after:?}");
}

#[test]
fn a_peer_with_the_wrong_secret_cannot_join() {
    let mut first = clustered_with(&[("QDRANT__CLUSTER__P2P__API_KEY", SECRET)]);
    first.launch(&["--uri".to_string(), uri("http", &first)]);
    for (label, env) in [
        (
            "wrong secret",
            vec![("QDRANT__CLUSTER__P2P__API_KEY", "not-the-secret")],
        ),
        ("no secret", vec![]),
    ] {
        let mut joiner = clustered_with(&env);
        let args = [
            "--uri".to_string(),
            uri("http", &joiner),
            "--bootstrap".to_string(),
            uri("http", &first),
        ];
        let (ok, log) = joiner.run_to_exit(&args, Duration::from_secs(60));
        assert!(!ok, "{label}: the joiner must stop\n{log}");
        assert!(
            log.contains("cluster.p2p.api_key"),
            "{label}: the joiner says why\n{log}"
        );
    }
    // The first peer is still alone.
    let cluster = first.ok(first.get("/cluster"));
    assert_eq!(cluster["peers"].as_object().unwrap().len(), 1, "{cluster}");
}

/// A CA and one certificate it signed for 127.0.0.1 / localhost (used by every peer as
/// server and client certificate), plus a second, unrelated CA's certificate for the
/// same names; written as PEM files into `dir`.
struct Pki {
    ca: String,
    cert: String,
    key: String,
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    stranger_cert_pem: String,
    stranger_key_pem: String,
}

fn make_pki(dir: &std::path::Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let node_key = KeyPair::generate().unwrap();
    let node_cert = CertificateParams::new(names.clone())
        .unwrap()
        .signed_by(&node_key, &ca)
        .unwrap();
    let stranger = rcgen::generate_simple_self_signed(names).unwrap();

    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (ca_pem, cert_pem, key_pem) = (ca.pem(), node_cert.pem(), node_key.serialize_pem());
    Pki {
        ca: write("ca.pem", &ca_pem),
        cert: write("cert.pem", &cert_pem),
        key: write("key.pem", &key_pem),
        ca_pem,
        cert_pem,
        key_pem,
        stranger_cert_pem: stranger.cert.pem(),
        stranger_key_pem: stranger.signing_key.serialize_pem(),
    }
}

async fn tls_channel(node: &TestNode, tls: ClientTlsConfig) -> Result<Channel, String> {
    Endpoint::from_shared(uri("https", node))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Join asks for a peer id that is taken by nothing and a URI nobody serves; a peer that
/// lets the call through answers it with a user error or adds it, a refused one never
/// reaches that far. Here it is only a probe of what the TLS layer lets through.
fn probe_join() -> JoinRequest {
    JoinRequest {
        peer_id: 0,
        uri: "not a uri".to_string(),
        p2p_port: 0,
    }
}

#[test]
fn a_peer_tls_cluster_with_client_certificates_forms_and_replicates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let env = [
        ("QDRANT__CLUSTER__P2P__ENABLE_TLS", "true"),
        ("QDRANT__SERVICE__VERIFY_HTTPS_CLIENT_CERTIFICATE", "true"),
        ("QDRANT__TLS__CERT", pki.cert.as_str()),
        ("QDRANT__TLS__KEY", pki.key.as_str()),
        ("QDRANT__TLS__CA_CERT", pki.ca.as_str()),
        ("QDRANT__CLUSTER__P2P__API_KEY", SECRET),
    ];
    let peers = three_peers("https", &env);
    replicated_collection(&peers);
    let target = &peers[1];

    runtime().block_on(async {
        let trusted = || ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem));

        // Plain HTTP/2 on the TLS peer port gets nowhere.
        let plain = Endpoint::from_shared(uri("http", target))
            .unwrap()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(10))
            .connect()
            .await;
        if let Ok(channel) = plain {
            let answer = RaftClient::new(channel)
                .join(keyed(probe_join(), Some(SECRET)))
                .await;
            let status = answer.expect_err("plain HTTP on the TLS peer port must fail");
            assert_ne!(status.code(), Code::InvalidArgument, "{status:?}");
        }

        // TLS without a client certificate: the handshake or the first call fails.
        let no_cert = match tls_channel(target, trusted()).await {
            Ok(channel) => RaftClient::new(channel)
                .join(keyed(probe_join(), Some(SECRET)))
                .await
                .err()
                .map(|s| format!("{s:?}")),
            Err(err) => Some(err),
        };
        assert!(
            no_cert.is_some(),
            "a client without a certificate is refused"
        );

        // A client certificate from another CA: refused the same way.
        let stranger = trusted().identity(Identity::from_pem(
            &pki.stranger_cert_pem,
            &pki.stranger_key_pem,
        ));
        let foreign = match tls_channel(target, stranger).await {
            Ok(channel) => RaftClient::new(channel)
                .join(keyed(probe_join(), Some(SECRET)))
                .await
                .err()
                .map(|s| format!("{s:?}")),
            Err(err) => Some(err),
        };
        assert!(foreign.is_some(), "a certificate of another CA is refused");

        // The peers' own certificate passes TLS; the secret is still checked behind it,
        // and with it the call reaches the service (which refuses the malformed URI).
        let member = trusted().identity(Identity::from_pem(&pki.cert_pem, &pki.key_pem));
        let channel = tls_channel(target, member)
            .await
            .expect("a peer certificate signed by tls.ca_cert is accepted");
        let mut raft = RaftClient::new(channel);
        assert_eq!(
            code(raft.join(keyed(probe_join(), None)).await),
            Code::Unauthenticated
        );
        assert_eq!(
            code(raft.join(keyed(probe_join(), Some(SECRET))).await),
            Code::InvalidArgument
        );
    });
    // Nothing the probes did changed the cluster.
    wait_for_agreement(&peers.iter().collect::<Vec<_>>(), 3);
    assert_eq!(counts(&peers), vec![POINTS; 3]);
}

#[test]
fn a_peer_uri_must_match_the_peer_ports_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let mut tls_node = clustered_with(&[
        ("QDRANT__CLUSTER__P2P__ENABLE_TLS", "true"),
        ("QDRANT__TLS__CERT", pki.cert.as_str()),
        ("QDRANT__TLS__KEY", pki.key.as_str()),
        ("QDRANT__TLS__CA_CERT", pki.ca.as_str()),
    ]);
    let args = ["--uri".to_string(), uri("http", &tls_node)];
    let (ok, log) = tls_node.run_to_exit(&args, Duration::from_secs(30));
    assert!(!ok && log.contains("must start with https://"), "{log}");

    let mut plain_node = clustered_with(&[]);
    let args = ["--uri".to_string(), uri("https", &plain_node)];
    let (ok, log) = plain_node.run_to_exit(&args, Duration::from_secs(30));
    assert!(!ok && log.contains("must start with http://"), "{log}");
}

/// `service.verify_https_client_certificate` with `service.enable_tls`: REST and public
/// gRPC require a client certificate signed by `tls.ca_cert` as well.
#[test]
fn public_tls_ports_require_client_certificates_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let mut node = TestNode::prepare(&[
        ("QDRANT__SERVICE__ENABLE_TLS", "true"),
        ("QDRANT__SERVICE__VERIFY_HTTPS_CLIENT_CERTIFICATE", "true"),
        ("QDRANT__TLS__CERT", pki.cert.as_str()),
        ("QDRANT__TLS__KEY", pki.key.as_str()),
        ("QDRANT__TLS__CA_CERT", pki.ca.as_str()),
    ]);
    node.spawn_no_wait(&[]);

    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap();
    let identity =
        reqwest::Identity::from_pem(format!("{}{}", pki.cert_pem, pki.key_pem).as_bytes()).unwrap();
    let client = |identity: Option<reqwest::Identity>| {
        let mut builder = reqwest::blocking::Client::builder()
            .add_root_certificate(ca.clone())
            .timeout(Duration::from_secs(10));
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        builder.build().unwrap()
    };
    let (member, anonymous) = (client(Some(identity)), client(None));
    let url = format!("https://127.0.0.1:{}/readyz", node.http_port);
    let mut ready = false;
    for _ in 0..300 {
        if member
            .get(&url)
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ready, "node not ready over mTLS\n{}", node.log());
    assert!(
        anonymous.get(&url).send().is_err(),
        "REST without a client certificate is refused"
    );

    runtime().block_on(async {
        use shoal::api::grpc::proto::qdrant_client::QdrantClient;
        use shoal::api::grpc::proto::HealthCheckRequest;
        let grpc = |tls: ClientTlsConfig| {
            Endpoint::from_shared(format!("https://127.0.0.1:{}", node.grpc_port))
                .unwrap()
                .tls_config(tls)
                .unwrap()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(10))
        };
        let trusted = || ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem));
        let with_cert = grpc(trusted().identity(Identity::from_pem(&pki.cert_pem, &pki.key_pem)))
            .connect()
            .await
            .expect("mTLS gRPC connection");
        QdrantClient::new(with_cert)
            .health_check(HealthCheckRequest {})
            .await
            .expect("health check over mTLS");
        let refused = match grpc(trusted()).connect().await {
            Ok(channel) => QdrantClient::new(channel)
                .health_check(HealthCheckRequest {})
                .await
                .is_err(),
            Err(_) => true,
        };
        assert!(refused, "gRPC without a client certificate is refused");
    });
}
