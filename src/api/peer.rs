//! The peer service on `cluster.p2p.port` (6335), served only when `cluster.enabled`.
//!
//! It carries no user traffic: Raft messages from other peers, which go straight into
//! consensus, the join handshake of new peers, answered by the node (see
//! `node/cluster.rs`), and the `Shards` calls other peers make to the shard replicas held
//! here (see `node/replicas.rs`). The wire types are `transport::proto` (package `shoal.peer`); this
//! file is also the one place that maps [`Error`] to gRPC status codes. Every call passes
//! the cluster secret check of `peer_auth.rs` first, and the port serves TLS when
//! `cluster.p2p.enable_tls` is on.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

use crate::error::Error;
use crate::node::Node;
use crate::replication::remote::{digest_to_proto, STREAM_WINDOW};
use crate::snapshot::archive::FileCheck;
use crate::snapshot::upload::ChannelReader;
use crate::transport::proto::raft_server::{Raft, RaftServer};
use crate::transport::proto::shards_server::{Shards, ShardsServer};
use crate::transport::proto::{
    DigestRequest, DigestResponse, DrainRequest, Empty, InstallSnapshotResponse, JoinRequest,
    JoinResponse, RaftMessage, ShardOpRequest, ShardOpResponse, ShardReadRequest,
    ShardReadResponse, SnapshotChunk,
};
use crate::transport::MAX_PEER_MESSAGE_BYTES;

/// Binds the peer port; separate from [`serve`] so that a taken port stops start-up early.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpIncoming> {
    TcpIncoming::bind(addr).map(|incoming| incoming.with_nodelay(Some(true)))
}

/// Serves the peer service on `incoming` until `shutdown` is cancelled.
pub async fn serve(
    node: Arc<Node>,
    incoming: TcpIncoming,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tls = super::peer_auth::server_tls(&node.settings)?;
    let key_check =
        super::peer_auth::PeerKeyLayer::new(node.settings.cluster.p2p.api_key.as_deref());
    let derived_scheme = if tls.is_some() { "https" } else { "http" };
    let shards = ShardsServer::new(ShardService { node: node.clone() })
        .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
    let service = RaftServer::new(PeerService {
        node,
        derived_scheme,
    })
    .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(STREAM_WINDOW))
        .layer(key_check)
        .add_service(service)
        .add_service(shards)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await?;
    Ok(())
}

struct PeerService {
    node: Arc<Node>,
    /// `https` when this port serves TLS: a joiner's derived URI uses it too.
    derived_scheme: &'static str,
}

#[tonic::async_trait]
impl Raft for PeerService {
    async fn send(&self, request: Request<RaftMessage>) -> Result<Response<Empty>, Status> {
        self.node
            .consensus
            .step(request.into_inner().message)
            .map_err(status_of)?;
        Ok(Response::new(Empty {}))
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let caller = request.remote_addr();
        let request = request.into_inner();
        let uri = if request.uri.is_empty() {
            // As Qdrant does: the joiner gave no URI, so use the address it calls from.
            let port = u16::try_from(request.p2p_port).ok().filter(|p| *p != 0);
            let (Some(caller), Some(port)) = (caller, port) else {
                return Err(Status::invalid_argument(
                    "the joining peer gave no URI and its address is unknown; start it with --uri",
                ));
            };
            derived_uri(self.derived_scheme, caller, port)
        } else {
            request.uri
        };
        let answer = self
            .node
            .add_peer(request.peer_id, &uri)
            .await
            .map_err(status_of)?;
        Ok(Response::new(JoinResponse {
            first_peer_id: answer.first_peer_id,
            peers: answer.peers.into_iter().collect(),
            uri: answer.uri,
        }))
    }
}

struct ShardService {
    node: Arc<Node>,
}

#[tonic::async_trait]
impl Shards for ShardService {
    async fn apply(
        &self,
        request: Request<ShardOpRequest>,
    ) -> Result<Response<ShardOpResponse>, Status> {
        let r = request.into_inner();
        let operation_id = self
            .node
            .serve_shard_apply(
                &r.collection,
                r.shard_id,
                &r.op,
                r.wait,
                r.min_applied_index,
            )
            .await
            .map_err(status_of)?;
        Ok(Response::new(ShardOpResponse { operation_id }))
    }

    async fn drain(&self, request: Request<DrainRequest>) -> Result<Response<Empty>, Status> {
        let r = request.into_inner();
        self.node
            .serve_drain(&r.collection, r.shard_id, r.index)
            .await
            .map_err(status_of)?;
        Ok(Response::new(Empty {}))
    }

    async fn read(
        &self,
        request: Request<ShardReadRequest>,
    ) -> Result<Response<ShardReadResponse>, Status> {
        let r = request.into_inner();
        let result = self
            .node
            .serve_shard_read(&r.collection, r.shard_id, &r.read, r.min_applied_index)
            .await
            .map_err(status_of)?;
        Ok(Response::new(ShardReadResponse { result }))
    }

    async fn digest(
        &self,
        request: Request<DigestRequest>,
    ) -> Result<Response<DigestResponse>, Status> {
        let r = request.into_inner();
        let digest = self
            .node
            .serve_shard_digest(&r.collection, r.shard_id, r.min_applied_index)
            .await
            .map_err(status_of)?;
        Ok(Response::new(digest_to_proto(&digest)))
    }

    /// Feeds the archive bytes to the node's installer as they arrive; whether the last
    /// message arrived is handed over once the stream has ended.
    async fn install_snapshot(
        &self,
        request: Request<tonic::Streaming<SnapshotChunk>>,
    ) -> Result<Response<InstallSnapshotResponse>, Status> {
        let mut stream = request.into_inner();
        let header = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an empty snapshot stream"))?;
        let (collection, shard, min_applied_index) = (
            header.collection.clone(),
            header.shard_id,
            header.min_applied_index,
        );
        let check = if header.crc32_files {
            FileCheck::Crc32
        } else {
            FileCheck::Sha256
        };
        let (tx, reader) = ChannelReader::channel();
        let pump = async move {
            let mut chunk = Some(header);
            let mut complete = false;
            while let Some(current) = chunk {
                if !current.data.is_empty() && tx.send(Ok(current.data)).await.is_err() {
                    break; // The installer gave up; its error is the answer.
                }
                complete |= current.last;
                chunk = match stream.message().await {
                    Ok(next) => next,
                    Err(status) => {
                        let cut = std::io::Error::other(format!(
                            "the snapshot stream broke: {}",
                            status.message()
                        ));
                        let _ = tx.send(Err(cut)).await;
                        return false;
                    }
                };
            }
            complete
        };
        let points = self
            .node
            .install_transferred_snapshot(
                &collection,
                shard,
                min_applied_index,
                reader,
                check,
                pump,
            )
            .await
            .map_err(status_of)?;
        Ok(Response::new(InstallSnapshotResponse { points }))
    }
}

fn derived_uri(scheme: &str, caller: SocketAddr, port: u16) -> String {
    match caller.ip().to_canonical() {
        std::net::IpAddr::V4(ip) => format!("{scheme}://{ip}:{port}"),
        std::net::IpAddr::V6(ip) => format!("{scheme}://[{ip}]:{port}"),
    }
}

/// The gRPC code of each error class.
pub fn status_of(err: Error) -> Status {
    let code = match &err {
        Error::BadInput(_) | Error::ChecksumMismatch { .. } => Code::InvalidArgument,
        Error::BadRequest(_) => Code::FailedPrecondition,
        Error::NotFound(_) => Code::NotFound,
        Error::AlreadyExists(_) => Code::AlreadyExists,
        Error::Conflict(_) => Code::Aborted,
        Error::Forbidden(_) => Code::PermissionDenied,
        Error::Unauthorized(_) => Code::Unauthenticated,
        Error::Timeout(_) => Code::DeadlineExceeded,
        Error::Unavailable(_) => Code::Unavailable,
        Error::InsufficientStorage(_) => Code::ResourceExhausted,
        Error::Service(_) => Code::Internal,
    };
    Status::new(code, err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_uris_use_the_callers_ip() {
        let v4: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        assert_eq!(derived_uri("http", v4, 6335), "http://10.1.2.3:6335");
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:40000".parse().unwrap();
        assert_eq!(derived_uri("http", mapped, 6335), "http://10.1.2.3:6335");
        let v6: SocketAddr = "[fd00::1]:40000".parse().unwrap();
        assert_eq!(derived_uri("https", v6, 6335), "https://[fd00::1]:6335");
    }

    #[test]
    fn user_errors_keep_their_meaning() {
        let status = status_of(Error::AlreadyExists("taken".into()));
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(status.message(), "Wrong input: taken");
        assert_eq!(
            status_of(Error::Unavailable("x".into())).code(),
            Code::Unavailable
        );
    }
}
