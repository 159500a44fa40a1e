//! Qdrant's public gRPC API on `service.grpc_port` (6334; `null` disables it): the
//! `Qdrant` health check and the `Collections`, `Points` and `Snapshots` services
//! (generated from `proto/qdrant/`), gRPC reflection, gzip in both directions, the API
//! key check ([`auth_layer`]), response metrics ([`metrics_layer`]) and optional TLS.
//!
//! Handlers only convert (`convert/`) and call the same [`Node`] methods as the REST
//! routes; errors become statuses through the one table in `api/errors.rs`. Requests
//! larger than `service.max_request_size_mb` are refused with `InvalidArgument` before
//! they are read (`oversize.rs`).

pub mod auth_layer;
pub mod codec;
mod collections;
pub mod convert;
pub mod metrics_layer;
mod oversize;
mod points;
mod snapshots;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, ServerTlsConfig};
use tonic::{Request, Response, Status};

use crate::api::auth::ApiKeys;
use crate::api::errors::grpc_status;
use crate::error::Error;
use crate::node::Node;
use crate::types::QDRANT_API_VERSION;

/// Code generated from `proto/qdrant/` (package `qdrant`).
pub mod proto {
    #![allow(clippy::all)]
    tonic::include_proto!("qdrant");
}

/// The encoded descriptors of `proto/qdrant/`, served by reflection.
const DESCRIPTORS: &[u8] = tonic::include_file_descriptor_set!("qdrant_descriptor");

/// Runs a handler body and maps its error to the gRPC status of the one error table.
pub(crate) async fn answer<T>(
    body: impl Future<Output = Result<T, Error>>,
) -> Result<Response<T>, Status> {
    body.await
        .map(Response::new)
        .map_err(|err| grpc_status(&err))
}

/// Qdrant's `time` field: seconds spent on the request.
pub(crate) fn seconds_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

struct HealthService;

#[tonic::async_trait]
impl proto::qdrant_server::Qdrant for HealthService {
    async fn health_check(
        &self,
        _request: Request<proto::HealthCheckRequest>,
    ) -> Result<Response<proto::HealthCheckReply>, Status> {
        Ok(Response::new(proto::HealthCheckReply {
            title: crate::api::TITLE.to_string(),
            version: QDRANT_API_VERSION.to_string(),
            commit: None,
        }))
    }
}

/// Binds the public gRPC port; separate from [`serve`] so a taken port stops start-up.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpIncoming> {
    TcpIncoming::bind(addr).map(|incoming| incoming.with_nodelay(Some(true)))
}

/// Serves the public gRPC API on `incoming` until `shutdown` is cancelled.
pub async fn serve(
    node: Arc<Node>,
    incoming: TcpIncoming,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let settings = &node.settings;
    let limit = settings.service.max_request_size_mb * 1024 * 1024;
    let keys = ApiKeys::from_settings(&settings.service).map(Arc::new);
    let mut builder = tonic::transport::Server::builder();
    if settings.service.enable_tls {
        builder = builder.tls_config(tls_config(settings)?)?;
    }

    macro_rules! public {
        ($server:ty, $service:expr) => {
            <$server>::new($service)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(usize::MAX)
        };
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(DESCRIPTORS)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(DESCRIPTORS)
        .build_v1alpha()?;

    builder
        .layer(metrics_layer::MetricsLayer::new(node.metrics.clone()))
        .layer(auth_layer::AuthLayer::new(keys))
        .layer(oversize::OversizeLayer)
        .add_service(public!(
            proto::qdrant_server::QdrantServer<_>,
            HealthService
        ))
        .add_service(public!(
            proto::collections_server::CollectionsServer<_>,
            collections::CollectionsService { node: node.clone() }
        ))
        .add_service(public!(
            proto::points_server::PointsServer<_>,
            points::PointsService { node: node.clone() }
        ))
        .add_service(public!(
            proto::snapshots_server::SnapshotsServer<_>,
            snapshots::SnapshotsService { node: node.clone() }
        ))
        .add_service(reflection)
        .add_service(reflection_alpha)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await?;
    Ok(())
}

fn tls_config(settings: &crate::settings::Settings) -> anyhow::Result<ServerTlsConfig> {
    let (cert, key) = crate::api::tls::read_pem_files(&settings.tls)?;
    let config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if !settings.service.verify_https_client_certificate {
        return Ok(config);
    }
    let ca = crate::api::tls::read_ca_file(&settings.tls)?;
    Ok(config.client_ca_root(tonic::transport::Certificate::from_pem(ca)))
}
