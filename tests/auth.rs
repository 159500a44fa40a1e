//! API keys on both public ports (the matrix: no key, wrong key, read-only key, full
//! key; `api-key` header or gRPC metadata, and `Authorization: Bearer`), the upload that
//! is refused before its body is read, and TLS on REST and gRPC with a certificate made
//! by the test.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use qdrant_client::qdrant::collections_client::CollectionsClient;
use qdrant_client::qdrant::{
    CreateCollectionBuilder, DeleteCollectionBuilder, Distance, ListCollectionsRequest,
    PointStruct, SearchPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};
use support::TestNode;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Code, Status};

const FULL: &str = "full-key-for-tests";
const READ: &str = "read-only-key-for-tests";

fn keyed_node() -> TestNode {
    TestNode::start_with_env(&[
        ("QDRANT__SERVICE__API_KEY", FULL),
        ("QDRANT__SERVICE__READ_ONLY_API_KEY", READ),
    ])
}

/// Which credentials a request carries.
#[derive(Clone, Copy, Debug)]
enum Key {
    None,
    Wrong,
    ReadOnly,
    Full,
    FullBearer,
}

fn send(node: &TestNode, key: Key, method: Method, path: &str, body: Option<Value>) -> u16 {
    let client = Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut request = client.request(method, node.url(path));
    request = match key {
        Key::None => request,
        Key::Wrong => request.header("api-key", "not-the-key"),
        Key::ReadOnly => request.header("api-key", READ),
        Key::Full => request.header("api-key", FULL),
        Key::FullBearer => request.header("authorization", format!("Bearer {FULL}")),
    };
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().expect("request").status().as_u16()
}

#[test]
fn rest_key_matrix() {
    let node = keyed_node();
    // Health probes stay open.
    for path in ["/", "/healthz", "/livez", "/readyz"] {
        assert_eq!(
            send(&node, Key::None, Method::GET, path, None),
            200,
            "{path}"
        );
    }
    let create = json!({"vectors": {"size": 2, "distance": "Dot"}});
    assert_eq!(
        send(
            &node,
            Key::None,
            Method::PUT,
            "/collections/c",
            Some(create.clone())
        ),
        401
    );
    assert_eq!(
        send(
            &node,
            Key::Wrong,
            Method::PUT,
            "/collections/c",
            Some(create.clone())
        ),
        401
    );
    assert_eq!(
        send(
            &node,
            Key::ReadOnly,
            Method::PUT,
            "/collections/c",
            Some(create.clone())
        ),
        403
    );
    assert_eq!(
        send(
            &node,
            Key::FullBearer,
            Method::PUT,
            "/collections/c",
            Some(create)
        ),
        200
    );

    let upsert = json!({"points": [{"id": 1, "vector": [1.0, 0.0]}]});
    let search = json!({"vector": [1.0, 0.0], "limit": 1});
    let cases: &[(Method, &str, Option<Value>, [u16; 4])] = &[
        // method, path, body, [no key, wrong, read-only, full]
        (Method::GET, "/collections", None, [401, 401, 200, 200]),
        (Method::GET, "/collections/c", None, [401, 401, 200, 200]),
        (
            Method::PUT,
            "/collections/c/points?wait=true",
            Some(upsert),
            [401, 401, 403, 200],
        ),
        (
            Method::POST,
            "/collections/c/points/search",
            Some(search.clone()),
            [401, 401, 200, 200],
        ),
        (
            Method::POST,
            "/collections/c/points/query",
            Some(json!({"query": [1.0, 0.0]})),
            [401, 401, 200, 200],
        ),
        (
            Method::POST,
            "/collections/c/points/scroll",
            Some(json!({})),
            [401, 401, 200, 200],
        ),
        (
            Method::POST,
            "/collections/c/points/count",
            Some(json!({})),
            [401, 401, 200, 200],
        ),
        (
            Method::POST,
            "/collections/c/points",
            Some(json!({"ids": [1]})),
            [401, 401, 200, 200],
        ),
        (
            Method::POST,
            "/collections/c/points/delete",
            Some(json!({"points": [7]})),
            [401, 401, 403, 200],
        ),
        (
            Method::GET,
            "/collections/c/snapshots",
            None,
            [401, 401, 200, 200],
        ),
        (
            Method::POST,
            "/collections/c/snapshots",
            None,
            [401, 401, 403, 200],
        ),
        (Method::GET, "/snapshots", None, [401, 401, 200, 200]),
        (Method::POST, "/snapshots", None, [401, 401, 403, 200]),
        (
            Method::PUT,
            "/collections/c/snapshots/recover",
            // Inside the snapshots directory, so that the full key gets the handler's 400
            // (a path outside answers 403 whether or not it exists).
            Some(json!({"location": format!(
                "file://{}/nope.snapshot",
                node.dir().join("snapshots").display()
            )})),
            [401, 401, 403, 400],
        ),
    ];
    for (method, path, body, expected) in cases {
        let got: Vec<u16> = [Key::None, Key::Wrong, Key::ReadOnly, Key::Full]
            .into_iter()
            .map(|key| send(&node, key, method.clone(), path, body.clone()))
            .collect();
        // A 404 or 400 from the handler itself means the key was accepted.
        assert_eq!(got, expected.to_vec(), "{method} {path}");
    }
    // The snapshot made with the full key can be listed and downloaded with the read key.
    let listed: Value = Client::new()
        .get(node.url("/collections/c/snapshots"))
        .header("api-key", READ)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let name = listed["result"][0]["name"]
        .as_str()
        .expect("a snapshot")
        .to_string();
    let path = format!("/collections/c/snapshots/{name}");
    assert_eq!(send(&node, Key::ReadOnly, Method::GET, &path, None), 200);
    assert_eq!(send(&node, Key::ReadOnly, Method::DELETE, &path, None), 403);
    assert_eq!(send(&node, Key::Full, Method::DELETE, &path, None), 200);
    assert_eq!(
        send(&node, Key::ReadOnly, Method::DELETE, "/collections/c", None),
        403
    );
}

/// Sends the head of a huge upload and a little of its body, then reads the answer: a
/// refused key is answered without the server waiting for (reading) the rest.
fn upload_status(node: &TestNode, key: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", node.http_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST /collections/c/snapshots/upload HTTP/1.1\r\nHost: 127.0.0.1\r\napi-key: {key}\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 10737418240\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    stream.write_all(&chunk).unwrap();
    let mut answer = [0u8; 64];
    let n = stream
        .read(&mut answer)
        .expect("an answer before the body is sent");
    String::from_utf8_lossy(&answer[..n]).to_string()
}

#[test]
fn upload_with_a_bad_key_is_refused_before_the_body_is_read() {
    let node = keyed_node();
    let wrong = upload_status(&node, "not-the-key");
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let read_only = upload_status(&node, READ);
    assert!(read_only.starts_with("HTTP/1.1 403"), "{read_only}");
}

fn grpc_client(node: &TestNode, key: Option<&str>) -> Qdrant {
    let mut config = Qdrant::from_url(&format!("http://127.0.0.1:{}", node.grpc_port))
        .skip_compatibility_check();
    if let Some(key) = key {
        config = config.api_key(key);
    }
    config.build().unwrap()
}

/// The official client stubs (qdrant-client's `Collections` service) on a channel whose
/// every call carries `authorization: Bearer <key>` instead of `api-key`.
async fn bearer_collections(
    node: &TestNode,
    key: &str,
) -> CollectionsClient<InterceptedService<Channel, Bearer>> {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{}", node.grpc_port))
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .expect("gRPC connection");
    let value = format!("Bearer {key}").parse().unwrap();
    CollectionsClient::with_interceptor(channel, Bearer(value))
}

#[derive(Clone)]
struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

fn status_code<T>(result: Result<T, Status>) -> Code {
    result.map_or_else(|status| status.code(), |_| Code::Ok)
}

fn code<T: std::fmt::Debug>(result: Result<T, QdrantError>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(QdrantError::ResponseError { status }) => status.code(),
        Err(other) => panic!("expected a gRPC status, got {other:?}"),
    }
}

#[test]
fn grpc_key_matrix() {
    let node = keyed_node();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let none = grpc_client(&node, None);
        let wrong = grpc_client(&node, Some("not-the-key"));
        let read = grpc_client(&node, Some(READ));
        let full = grpc_client(&node, Some(FULL));
        let create = || {
            CreateCollectionBuilder::new("c")
                .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
        };
        // The health check stays open.
        assert_eq!(code(none.health_check().await), Code::Ok);

        assert_eq!(
            code(none.create_collection(create()).await),
            Code::Unauthenticated
        );
        assert_eq!(
            code(wrong.create_collection(create()).await),
            Code::Unauthenticated
        );
        assert_eq!(
            code(read.create_collection(create()).await),
            Code::PermissionDenied
        );
        assert_eq!(code(full.create_collection(create()).await), Code::Ok);

        let upsert = || {
            UpsertPointsBuilder::new(
                "c",
                vec![PointStruct::new(1, vec![1.0, 0.0], Payload::new())],
            )
            .wait(true)
        };
        assert_eq!(
            code(read.upsert_points(upsert()).await),
            Code::PermissionDenied
        );
        assert_eq!(code(full.upsert_points(upsert()).await), Code::Ok);

        let search = || SearchPointsBuilder::new("c", vec![1.0, 0.0], 1);
        for (client, expected) in [
            (&none, Code::Unauthenticated),
            (&wrong, Code::Unauthenticated),
            (&read, Code::Ok),
            (&full, Code::Ok),
        ] {
            assert_eq!(code(client.search_points(search()).await), expected);
            assert_eq!(code(client.list_collections().await), expected);
            assert_eq!(code(client.list_snapshots("c").await), expected);
        }
        assert_eq!(
            code(read.create_snapshot("c").await),
            Code::PermissionDenied
        );
        assert_eq!(
            code(read.create_full_snapshot().await),
            Code::PermissionDenied
        );
        assert_eq!(
            code(read.delete_collection("c").await),
            Code::PermissionDenied
        );
        assert_eq!(code(full.delete_collection("c").await), Code::Ok);

        // The same keys as `Authorization: Bearer <key>`.
        let mut bearer_wrong = bearer_collections(&node, "not-the-key").await;
        let mut bearer_read = bearer_collections(&node, READ).await;
        let mut bearer_full = bearer_collections(&node, FULL).await;
        let create = || {
            CreateCollectionBuilder::new("b")
                .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
                .build()
        };
        let list = || ListCollectionsRequest {};
        let delete = || DeleteCollectionBuilder::new("b").build();
        assert_eq!(
            status_code(bearer_wrong.create(create()).await),
            Code::Unauthenticated
        );
        assert_eq!(
            status_code(bearer_read.create(create()).await),
            Code::PermissionDenied
        );
        assert_eq!(status_code(bearer_full.create(create()).await), Code::Ok);
        assert_eq!(
            status_code(bearer_wrong.list(list()).await),
            Code::Unauthenticated
        );
        for client in [&mut bearer_read, &mut bearer_full] {
            let names: Vec<String> = client
                .list(list())
                .await
                .unwrap()
                .into_inner()
                .collections
                .into_iter()
                .map(|c| c.name)
                .collect();
            assert_eq!(names, ["b"]);
        }
        assert_eq!(
            status_code(bearer_read.delete(delete()).await),
            Code::PermissionDenied
        );
        assert_eq!(status_code(bearer_full.delete(delete()).await), Code::Ok);
        assert!(!full.collection_exists("b").await.unwrap());
    });
}

/// A self-signed certificate for 127.0.0.1 / localhost, written as PEM files.
fn self_signed(dir: &std::path::Path) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_pem = certified.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert_pem, cert, key)
}

#[test]
fn tls_on_rest_and_grpc() {
    let certs = tempfile::tempdir().unwrap();
    let (cert_pem, cert, key) = self_signed(certs.path());
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let mut node = TestNode::prepare(&[
        ("QDRANT__SERVICE__ENABLE_TLS", "true"),
        ("QDRANT__TLS__CERT", &cert_s),
        ("QDRANT__TLS__KEY", &key_s),
        ("QDRANT__SERVICE__API_KEY", FULL),
    ]);
    node.spawn_no_wait(&[]);

    let https = Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = |path: &str| format!("https://localhost:{}{path}", node.http_port);
    let mut ready = false;
    for _ in 0..300 {
        if https
            .get(url("/readyz"))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ready, "TLS node not ready\n{}", node.log());
    let listed = https
        .get(url("/collections"))
        .header("api-key", FULL)
        .send()
        .unwrap();
    assert_eq!(listed.status().as_u16(), 200);
    // Plain HTTP on the TLS port is not served.
    let plain = Client::new()
        .get(format!("http://127.0.0.1:{}/readyz", node.http_port))
        .timeout(Duration::from_secs(5))
        .send();
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use shoal::api::grpc::proto::qdrant_client::QdrantClient;
        use shoal::api::grpc::proto::HealthCheckRequest;
        use tonic::transport::{Certificate, Channel, ClientTlsConfig};
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&cert_pem))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://127.0.0.1:{}", node.grpc_port))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .expect("TLS gRPC connection");
        let reply = QdrantClient::new(channel)
            .health_check(HealthCheckRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(!reply.version.is_empty());
    });
}
