//! The official Rust `qdrant-client` (gRPC, gzip on) against a real shoal node:
//! collections and aliases, points and payloads, search, query, scroll and count,
//! collection and full snapshots, the cluster info of a collection, the error codes of
//! bad requests, and `service.grpc_port: null` (file and environment).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use qdrant_client::qdrant::{
    CollectionClusterInfoRequest, Condition, CountPointsBuilder, CreateAliasBuilder,
    CreateCollectionBuilder, DeletePayloadPointsBuilder, DeletePointsBuilder,
    DeleteSnapshotRequestBuilder, Distance, Filter, GetPointsBuilder, ListCollectionAliasesRequest,
    PointId, PointStruct, PointsIdsList, QueryPointsBuilder, RenameAliasBuilder, ReplicaState,
    ScrollPointsBuilder, SearchBatchPointsBuilder, SearchPointsBuilder, SetPayloadPointsBuilder,
    UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use serde_json::json;
use support::TestNode;
use tonic::Code;

fn client(node: &TestNode) -> Qdrant {
    Qdrant::from_url(&format!("http://127.0.0.1:{}", node.grpc_port))
        .compression(Some(qdrant_client::config::CompressionEncoding::Gzip))
        .skip_compatibility_check()
        .build()
        .expect("client")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn code_of(err: QdrantError) -> Code {
    match err {
        QdrantError::ResponseError { status } => status.code(),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

fn payload(value: serde_json::Value) -> Payload {
    Payload::try_from(value).unwrap()
}

fn points() -> Vec<PointStruct> {
    vec![
        PointStruct::new(
            1,
            vec![1.0, 0.0, 0.0, 0.0],
            payload(json!({"city": "Berlin", "n": 1})),
        ),
        PointStruct::new(
            2,
            vec![0.9, 0.1, 0.0, 0.0],
            payload(json!({"city": "London", "n": 2})),
        ),
        PointStruct::new(
            3,
            vec![0.0, 1.0, 0.0, 0.0],
            payload(json!({"city": "Berlin", "n": 3})),
        ),
        PointStruct::new(
            "5c56c793-69f3-4fbf-87e6-c4bf54c28c26",
            vec![0.0, 0.0, 1.0, 0.0],
            payload(json!({"city": "Paris", "n": 4})),
        ),
    ]
}

fn num(id: &PointId) -> u64 {
    match id.point_id_options {
        Some(qdrant_client::qdrant::point_id::PointIdOptions::Num(n)) => n,
        ref other => panic!("expected a numeric id, got {other:?}"),
    }
}

#[test]
fn collections_points_search_query_scroll_count() {
    let node = TestNode::start();
    runtime().block_on(async {
        let client = client(&node);
        let health = client.health_check().await.unwrap();
        assert!(!health.version.is_empty());

        client
            .create_collection(
                CreateCollectionBuilder::new("books")
                    .vectors_config(VectorParamsBuilder::new(4, Distance::Cosine)),
            )
            .await
            .unwrap();
        assert!(client.collection_exists("books").await.unwrap());
        assert!(!client.collection_exists("nope").await.unwrap());
        let names: Vec<_> = client
            .list_collections()
            .await
            .unwrap()
            .collections
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["books"]);
        client
            .create_alias(CreateAliasBuilder::new("books", "library"))
            .await
            .unwrap();
        let aliases = client.list_aliases().await.unwrap().aliases;
        assert_eq!(aliases.len(), 1);
        assert_eq!(aliases[0].alias_name, "library");

        let written = client
            .upsert_points(UpsertPointsBuilder::new("books", points()).wait(true))
            .await
            .unwrap();
        assert_eq!(
            written.result.unwrap().status,
            qdrant_client::qdrant::UpdateStatus::Completed as i32
        );
        let info = client
            .collection_info("library")
            .await
            .unwrap()
            .result
            .unwrap();
        assert_eq!(info.points_count, Some(4));
        let params = info.config.unwrap().params.unwrap();
        assert_eq!(params.shard_number, 1);

        let got = client
            .get_points(GetPointsBuilder::new("books", vec![1.into(), 3.into()]).with_vectors(true))
            .await
            .unwrap()
            .result;
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].payload["city"].as_str().map(String::as_str),
            Some("Berlin")
        );
        let vector = got[0].vectors.clone().unwrap().get_vector().unwrap();
        match vector {
            qdrant_client::qdrant::vector_output::Vector::Dense(d) => assert_eq!(d.data.len(), 4),
            other => panic!("expected a dense vector, got {other:?}"),
        }

        let hits = client
            .search_points(
                SearchPointsBuilder::new("books", vec![1.0, 0.0, 0.0, 0.0], 2).with_payload(true),
            )
            .await
            .unwrap()
            .result;
        assert_eq!(
            hits.iter()
                .map(|h| num(h.id.as_ref().unwrap()))
                .collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(hits[0].score > hits[1].score);
        assert!(hits[0].payload.contains_key("city"));

        let berlin = Filter::must([Condition::matches("city", "Berlin".to_string())]);
        let hits = client
            .search_points(
                SearchPointsBuilder::new("books", vec![1.0, 0.0, 0.0, 0.0], 10)
                    .filter(berlin.clone()),
            )
            .await
            .unwrap()
            .result;
        assert_eq!(hits.len(), 2);
        assert!(
            hits.iter().all(|h| h.payload.is_empty()),
            "payload only when asked"
        );

        let batch = client
            .search_batch_points(SearchBatchPointsBuilder::new(
                "books",
                vec![
                    SearchPointsBuilder::new("books", vec![0.0, 1.0, 0.0, 0.0], 1).build(),
                    SearchPointsBuilder::new("books", vec![1.0, 0.0, 0.0, 0.0], 3).build(),
                ],
            ))
            .await
            .unwrap()
            .result;
        assert_eq!(batch.len(), 2);
        assert_eq!(num(batch[0].result[0].id.as_ref().unwrap()), 3);
        assert_eq!(batch[1].result.len(), 3);

        let by_vector = client
            .query(
                QueryPointsBuilder::new("books")
                    .query(vec![0.0, 1.0, 0.0, 0.0])
                    .limit(1),
            )
            .await
            .unwrap()
            .result;
        assert_eq!(num(by_vector[0].id.as_ref().unwrap()), 3);
        let by_id = client
            .query(
                QueryPointsBuilder::new("books")
                    .query(PointId::from(1))
                    .limit(1),
            )
            .await
            .unwrap()
            .result;
        assert_eq!(
            num(by_id[0].id.as_ref().unwrap()),
            2,
            "nearest to point 1, itself excluded"
        );
        let ranged = client
            .query(
                QueryPointsBuilder::new("books")
                    .query(vec![1.0, 0.0, 0.0, 0.0])
                    .filter(Filter::must([Condition::range(
                        "n",
                        qdrant_client::qdrant::Range {
                            gte: Some(2.0),
                            ..Default::default()
                        },
                    )]))
                    .with_payload(true),
            )
            .await
            .unwrap()
            .result;
        assert_eq!(ranged.len(), 3);
        assert_eq!(num(ranged[0].id.as_ref().unwrap()), 2);

        let first = client
            .scroll(ScrollPointsBuilder::new("books").limit(3))
            .await
            .unwrap();
        assert_eq!(first.result.len(), 3);
        let next = first.next_page_offset.expect("a next page");
        let second = client
            .scroll(ScrollPointsBuilder::new("books").limit(3).offset(next))
            .await
            .unwrap();
        assert_eq!(second.result.len(), 1);
        assert!(second.next_page_offset.is_none());
        assert!(
            second.result[0].payload.contains_key("city"),
            "scroll returns payloads"
        );

        let counted = client
            .count(
                CountPointsBuilder::new("books")
                    .filter(berlin.clone())
                    .exact(true),
            )
            .await
            .unwrap();
        assert_eq!(counted.result.unwrap().count, 2);

        client
            .set_payload(
                SetPayloadPointsBuilder::new("books", payload(json!({"tag": "x"})))
                    .points_selector(PointsIdsList {
                        ids: vec![1.into()],
                    })
                    .wait(true),
            )
            .await
            .unwrap();
        client
            .delete_payload(
                DeletePayloadPointsBuilder::new("books", vec!["n".to_string()])
                    .points_selector(PointsIdsList {
                        ids: vec![1.into()],
                    })
                    .wait(true),
            )
            .await
            .unwrap();
        let one = client
            .get_points(GetPointsBuilder::new("books", vec![1.into()]).with_payload(true))
            .await
            .unwrap()
            .result;
        let keys: HashMap<_, _> = one[0].payload.clone().into_iter().collect();
        assert!(keys.contains_key("tag") && keys.contains_key("city") && !keys.contains_key("n"));

        client
            .delete_points(DeletePointsBuilder::new("books").points(berlin).wait(true))
            .await
            .unwrap();
        let left = client
            .count(CountPointsBuilder::new("books"))
            .await
            .unwrap();
        assert_eq!(left.result.unwrap().count, 2);

        assert!(client.delete_collection("books").await.unwrap().result);
        assert!(!client.collection_exists("books").await.unwrap());
    });
}

#[test]
fn collection_and_full_snapshots() {
    let node = TestNode::start();
    let rt = runtime();
    let client = client(&node);
    let created = rt.block_on(async {
        client
            .create_collection(
                CreateCollectionBuilder::new("snap")
                    .vectors_config(VectorParamsBuilder::new(4, Distance::Dot)),
            )
            .await
            .unwrap();
        client
            .upsert_points(UpsertPointsBuilder::new("snap", points()).wait(true))
            .await
            .unwrap();

        let created = client
            .create_snapshot("snap")
            .await
            .unwrap()
            .snapshot_description
            .unwrap();
        assert!(created.name.ends_with(".snapshot"), "{}", created.name);
        assert!(created.size > 0);
        assert!(created.creation_time.is_some());
        let listed = client
            .list_snapshots("snap")
            .await
            .unwrap()
            .snapshot_descriptions;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, created.name);
        created
    });
    // The same file is listed over REST.
    let (status, body) = node.get("/collections/snap/snapshots");
    assert_eq!(status, 200);
    assert_eq!(body["result"][0]["name"], json!(created.name));
    rt.block_on(async {
        client
            .delete_snapshot(DeleteSnapshotRequestBuilder::new("snap", &created.name))
            .await
            .unwrap();
        assert!(client
            .list_snapshots("snap")
            .await
            .unwrap()
            .snapshot_descriptions
            .is_empty());
        let missing = client
            .delete_snapshot(DeleteSnapshotRequestBuilder::new("snap", &created.name))
            .await
            .unwrap_err();
        assert_eq!(code_of(missing), Code::NotFound);

        let full = client
            .create_full_snapshot()
            .await
            .unwrap()
            .snapshot_description
            .unwrap();
        let listed = client
            .list_full_snapshots()
            .await
            .unwrap()
            .snapshot_descriptions;
        assert_eq!(
            listed.iter().map(|s| &s.name).collect::<Vec<_>>(),
            [&full.name]
        );
        client
            .delete_full_snapshot(full.name.clone())
            .await
            .unwrap();
        assert!(client
            .list_full_snapshots()
            .await
            .unwrap()
            .snapshot_descriptions
            .is_empty());

        let unknown = client.create_snapshot("nope").await.unwrap_err();
        assert_eq!(code_of(unknown), Code::NotFound);
        let bad_name = client.create_snapshot("a/b").await.unwrap_err();
        assert_eq!(code_of(bad_name), Code::InvalidArgument);
        let empty = client
            .delete_snapshot(DeleteSnapshotRequestBuilder::new("snap", ""))
            .await
            .unwrap_err();
        assert_eq!(code_of(empty), Code::InvalidArgument);
    });
}

#[test]
fn bad_requests_get_qdrant_codes_and_the_server_keeps_serving() {
    let node = TestNode::start_with_env(&[("QDRANT__SERVICE__MAX_REQUEST_SIZE_MB", "1")]);
    runtime().block_on(async {
        let client = client(&node);
        let err = client.collection_info("nope").await.unwrap_err();
        assert_eq!(code_of(err), Code::NotFound);

        client
            .create_collection(
                CreateCollectionBuilder::new("c")
                    .vectors_config(VectorParamsBuilder::new(4, Distance::Euclid)),
            )
            .await
            .unwrap();
        let again = client
            .create_collection(
                CreateCollectionBuilder::new("c")
                    .vectors_config(VectorParamsBuilder::new(4, Distance::Euclid)),
            )
            .await
            .unwrap_err();
        assert_eq!(code_of(again), Code::AlreadyExists);

        let wrong_dim = client
            .upsert_points(UpsertPointsBuilder::new(
                "c",
                vec![PointStruct::new(1, vec![1.0, 2.0], Payload::new())],
            ))
            .await
            .unwrap_err();
        assert_eq!(code_of(wrong_dim), Code::InvalidArgument);

        let unsupported =
            client
                .query(QueryPointsBuilder::new("c").query(
                    qdrant_client::qdrant::Query::new_fusion(qdrant_client::qdrant::Fusion::Rrf),
                ))
                .await
                .unwrap_err();
        assert_eq!(code_of(unsupported), Code::InvalidArgument);

        // ~2 MiB of vectors against a 1 MiB limit: a clean status, no dropped connection.
        let big: Vec<PointStruct> = (0..130_000u64)
            .map(|i| PointStruct::new(i, vec![1.0, 2.0, 3.0, 4.0], Payload::new()))
            .collect();
        let plain = Qdrant::from_url(&format!("http://127.0.0.1:{}", node.grpc_port))
            .skip_compatibility_check()
            .build()
            .unwrap();
        let oversize = plain
            .upsert_points(UpsertPointsBuilder::new("c", big))
            .await
            .unwrap_err();
        let QdrantError::ResponseError { status } = oversize else {
            panic!("expected a gRPC status, got {oversize:?}");
        };
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("max_request_size_mb"),
            "{status:?}"
        );

        // Still serving on the same client.
        assert!(plain.collection_exists("c").await.unwrap());
    });
}

/// Sends raw bytes as a request message, to see how bad input is answered.
#[derive(Default)]
struct RawCodec;

struct RawBytes;

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;
    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }
    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

#[test]
fn wrong_message_types_are_invalid_argument_and_reflection_lists_the_services() {
    let node = TestNode::start();
    runtime().block_on(async {
        let url = format!("http://127.0.0.1:{}", node.grpc_port);
        let channel = tonic::transport::Channel::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        // Field 1 (collection_name, a string) sent as a varint: not an UpsertPoints.
        for bytes in [vec![0x08, 0x01], vec![0xff, 0xff, 0xff]] {
            grpc.ready().await.unwrap();
            let answer = grpc
                .unary(
                    tonic::Request::new(bytes),
                    "/qdrant.Points/Upsert".parse().unwrap(),
                    RawCodec,
                )
                .await
                .unwrap_err();
            assert_eq!(answer.code(), Code::InvalidArgument, "{answer:?}");
        }

        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = ServerReflectionClient::new(channel)
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let first = answers.message().await.unwrap().expect("an answer");
        let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
            panic!("expected a service list, got {first:?}");
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        for service in [
            "qdrant.Qdrant",
            "qdrant.Collections",
            "qdrant.Points",
            "qdrant.Snapshots",
        ] {
            assert!(names.iter().any(|n| n == service), "{service} in {names:?}");
        }
    });
}

#[test]
fn collection_cluster_info_on_a_single_node() {
    let node = TestNode::start();
    let rt = runtime();
    let client = client(&node);
    let more: Vec<PointStruct> = (10..16u64)
        .map(|i| PointStruct::new(i, vec![i as f32, 1.0, 0.0, 0.0], Payload::new()))
        .collect();
    let info = rt.block_on(async {
        client
            .create_collection(
                CreateCollectionBuilder::new("sharded")
                    .vectors_config(VectorParamsBuilder::new(4, Distance::Cosine))
                    .shard_number(2),
            )
            .await
            .unwrap();
        for batch in [points(), more] {
            client
                .upsert_points(UpsertPointsBuilder::new("sharded", batch).wait(true))
                .await
                .unwrap();
        }
        client
            .create_alias(CreateAliasBuilder::new("sharded", "sharded_alias"))
            .await
            .unwrap();
        let info = client
            .collection_cluster_info(CollectionClusterInfoRequest {
                collection_name: "sharded".into(),
            })
            .await
            .unwrap();
        // The same answer through an alias.
        let via_alias = client
            .collection_cluster_info(CollectionClusterInfoRequest {
                collection_name: "sharded_alias".into(),
            })
            .await
            .unwrap();
        assert_eq!(
            (
                via_alias.peer_id,
                via_alias.shard_count,
                &via_alias.local_shards
            ),
            (info.peer_id, info.shard_count, &info.local_shards)
        );
        let unknown = client
            .collection_cluster_info(CollectionClusterInfoRequest {
                collection_name: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(code_of(unknown), Code::NotFound);
        info
    });

    // One peer holds both shards, Active, with every point once.
    assert_ne!(info.peer_id, 0, "{info:?}");
    assert_eq!(info.shard_count, 2, "{info:?}");
    let mut shard_ids: Vec<u32> = info.local_shards.iter().map(|s| s.shard_id).collect();
    shard_ids.sort_unstable();
    assert_eq!(shard_ids, [0, 1], "{info:?}");
    for shard in &info.local_shards {
        assert_eq!(shard.state, ReplicaState::Active as i32, "{info:?}");
    }
    let stored: u64 = info.local_shards.iter().map(|s| s.points_count).sum();
    assert_eq!(stored, 10, "{info:?}");
    assert!(info.remote_shards.is_empty(), "{info:?}");
    assert!(info.shard_transfers.is_empty(), "{info:?}");

    // REST reports the same peer and the same shards.
    let rest = node.ok(node.get("/collections/sharded/cluster"));
    assert_eq!(rest["peer_id"], json!(info.peer_id), "{rest}");
    assert_eq!(rest["shard_count"], json!(info.shard_count), "{rest}");
    for shard in &info.local_shards {
        let same = rest["local_shards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["shard_id"] == json!(shard.shard_id))
            .unwrap_or_else(|| panic!("shard {} in {rest}", shard.shard_id));
        assert_eq!(same["points_count"], json!(shard.points_count), "{rest}");
        assert_eq!(same["state"], "Active", "{rest}");
    }
}

#[test]
fn aliases_rename_and_delete() {
    let node = TestNode::start();
    runtime().block_on(async {
        let client = client(&node);
        for name in ["books", "films"] {
            client
                .create_collection(
                    CreateCollectionBuilder::new(name)
                        .vectors_config(VectorParamsBuilder::new(4, Distance::Dot)),
                )
                .await
                .unwrap();
        }
        client
            .upsert_points(UpsertPointsBuilder::new("books", points()).wait(true))
            .await
            .unwrap();
        client
            .create_alias(CreateAliasBuilder::new("books", "library"))
            .await
            .unwrap();
        client
            .create_alias(CreateAliasBuilder::new("films", "cinema"))
            .await
            .unwrap();

        let pairs = |aliases: Vec<qdrant_client::qdrant::AliasDescription>| {
            let mut pairs: Vec<(String, String)> = aliases
                .into_iter()
                .map(|a| (a.alias_name, a.collection_name))
                .collect();
            pairs.sort();
            pairs
        };
        let of_books = || ListCollectionAliasesRequest {
            collection_name: "books".into(),
        };

        // Rename: the new name resolves to the same collection, the old one is gone.
        let renamed = client
            .rename_alias(RenameAliasBuilder::new("library", "shelf"))
            .await
            .unwrap();
        assert!(renamed.result, "{renamed:?}");
        assert_eq!(
            pairs(client.list_aliases().await.unwrap().aliases),
            [
                ("cinema".to_string(), "films".to_string()),
                ("shelf".to_string(), "books".to_string())
            ]
        );
        assert_eq!(
            pairs(
                client
                    .list_collection_aliases(of_books())
                    .await
                    .unwrap()
                    .aliases
            ),
            [("shelf".to_string(), "books".to_string())]
        );
        let through_new = client
            .count(CountPointsBuilder::new("shelf").exact(true))
            .await
            .unwrap();
        assert_eq!(through_new.result.unwrap().count, 4);
        let through_old = client.collection_info("library").await.unwrap_err();
        assert_eq!(code_of(through_old), Code::NotFound);
        let missing = client
            .rename_alias(RenameAliasBuilder::new("library", "other"))
            .await
            .unwrap_err();
        assert_eq!(code_of(missing), Code::NotFound);

        // Delete: the alias stops resolving, the collection and the other alias stay.
        let deleted = client.delete_alias("shelf").await.unwrap();
        assert!(deleted.result, "{deleted:?}");
        assert_eq!(
            pairs(client.list_aliases().await.unwrap().aliases),
            [("cinema".to_string(), "films".to_string())]
        );
        assert!(client
            .list_collection_aliases(of_books())
            .await
            .unwrap()
            .aliases
            .is_empty());
        let gone = client.collection_info("shelf").await.unwrap_err();
        assert_eq!(code_of(gone), Code::NotFound);
        let again = client.delete_alias("shelf").await.unwrap_err();
        assert_eq!(code_of(again), Code::NotFound);
        let left = client
            .count(CountPointsBuilder::new("books").exact(true))
            .await
            .unwrap();
        assert_eq!(left.result.unwrap().count, 4);
    });
    // REST sees the same aliases.
    let rest = node.ok(node.get("/aliases"));
    assert_eq!(
        rest["aliases"],
        json!([{"alias_name": "cinema", "collection_name": "films"}]),
        "{rest}"
    );
}

/// Whether something accepts TCP connections on the loopback port.
fn listening(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok()
}

const GRPC_LISTENING: &str = "public gRPC API listening";

#[test]
fn grpc_port_null_disables_the_public_grpc_port() {
    let mut node = TestNode::prepare(&[]);
    let port = node.grpc_port;
    // The lowest layer (config/config.yaml in the node's working directory) names the
    // port; the layers above switch it off with null. The test's default
    // QDRANT__SERVICE__GRPC_PORT is left out so that the files decide.
    std::fs::create_dir_all(node.dir().join("config")).unwrap();
    std::fs::write(
        node.dir().join("config/config.yaml"),
        format!("service:\n  grpc_port: {port}\n"),
    )
    .unwrap();
    let no_grpc = node.dir().join("no-grpc.yaml");
    std::fs::write(&no_grpc, "service:\n  grpc_port: null\n").unwrap();
    node.unset_env("QDRANT__SERVICE__GRPC_PORT");

    // Control: with only the lower layer, gRPC is served on the port.
    node.launch(&[]);
    assert!(node.log().contains(GRPC_LISTENING), "{}", node.log());
    let version = runtime().block_on(async { client(&node).health_check().await.unwrap().version });
    assert!(!version.is_empty());
    node.create_collection("kept", json!({"vectors": {"size": 4, "distance": "Dot"}}));
    node.stop();

    let disabled = |node: &mut TestNode, args: &[String], how: &str| {
        let before = node.log().len();
        node.launch(args);
        let listed = node.ok(node.get("/collections"));
        assert_eq!(
            listed["collections"],
            json!([{"name": "kept"}]),
            "{how}: REST answers"
        );
        assert!(!listening(port), "{how}: something listens on {port}");
        let run_log = node.log()[before..].to_string();
        assert!(!run_log.contains(GRPC_LISTENING), "{how}:\n{run_log}");
        node.stop();
    };
    // The --config-path file's null over config/config.yaml's port.
    disabled(
        &mut node,
        &["--config-path".to_string(), no_grpc.display().to_string()],
        "grpc_port: null in --config-path",
    );
    // The environment's null over config/config.yaml's port.
    node.set_env("QDRANT__SERVICE__GRPC_PORT", "null");
    disabled(&mut node, &[], "QDRANT__SERVICE__GRPC_PORT=null");
}
