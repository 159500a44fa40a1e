//! The shoal binary: parse flags, load settings, start the node, serve until a signal.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use shoal::cli::Cli;
use shoal::node::cluster::ClusterArgs;
use shoal::node::Node;
use shoal::settings::Settings;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config_path.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("shoal: {err}");
            return ExitCode::from(2);
        }
    };
    init_tracing(settings.log_level.as_deref());
    for warning in &settings.load_warnings {
        tracing::warn!("{warning}");
    }
    // reqwest and tonic share one TLS crypto provider, installed once per process.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("shoal: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings, cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("shoal: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings, cli: Cli) -> anyhow::Result<()> {
    let host: IpAddr = settings.service.host.parse().map_err(|e| {
        anyhow::anyhow!(
            "service.host: `{}` is not an IP address: {e}",
            settings.service.host
        )
    })?;
    let rest_addr = SocketAddr::new(host, settings.service.http_port);
    // The peer port is bound before joining, so a taken port stops start-up before this
    // peer becomes a member it could not serve as.
    let peer_listener = if settings.cluster.enabled {
        let addr = SocketAddr::new(host, settings.cluster.p2p.port);
        let incoming = shoal::api::peer::bind(addr)
            .map_err(|e| anyhow::anyhow!("peer port {addr} (cluster.p2p.port): {e}"))?;
        Some((addr, incoming))
    } else {
        None
    };
    // The public gRPC port too: a taken port stops start-up.
    let grpc_listener = match settings.service.grpc_port {
        Some(port) => {
            let addr = SocketAddr::new(host, port);
            let incoming = shoal::api::grpc::bind(addr)
                .map_err(|e| anyhow::anyhow!("gRPC port {addr} (service.grpc_port): {e}"))?;
            Some((addr, incoming))
        }
        None => None,
    };
    let args = ClusterArgs {
        uri: cli.uri.clone(),
        bootstrap: cli.bootstrap.clone(),
    };
    let node = Node::start(settings, args).await?;
    tracing::info!(peer_id = node.consensus.peer_id(), "shoal node started");

    let shutdown = CancellationToken::new();
    if let Some((addr, incoming)) = peer_listener {
        let p2p = &node.settings.cluster.p2p;
        tracing::info!(%addr, tls = p2p.enable_tls, peer_key = p2p.api_key.is_some(), "peer service listening");
        let serving = shoal::api::peer::serve(node.clone(), incoming, shutdown.clone());
        let stop_all = shutdown.clone();
        tokio::spawn(async move {
            if let Err(err) = serving.await {
                tracing::error!(%err, "peer service stopped; shutting down");
                stop_all.cancel();
            }
        });
    }
    if let Err(err) = recover_at_startup(&node, &cli).await {
        shutdown.cancel();
        node.shutdown().await;
        return Err(err);
    }

    if let Some((addr, incoming)) = grpc_listener {
        tracing::info!(%addr, tls = node.settings.service.enable_tls, "public gRPC API listening");
        let serving = shoal::api::grpc::serve(node.clone(), incoming, shutdown.clone());
        let stop_all = shutdown.clone();
        tokio::spawn(async move {
            if let Err(err) = serving.await {
                tracing::error!(err = %format!("{err:#}"), "public gRPC API stopped; shutting down");
                stop_all.cancel();
            }
        });
    }
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let served = shoal::api::rest::serve(node.clone(), rest_addr, shutdown.clone()).await;
    node.shutdown().await;
    served.map_err(|e| anyhow::anyhow!("REST server on {rest_addr}: {e}"))
}

/// `--storage-snapshot` (which wins) or every `--snapshot`, before serving.
async fn recover_at_startup(node: &Node, cli: &Cli) -> anyhow::Result<()> {
    if let Some(path) = &cli.storage_snapshot {
        let restored = node
            .recover_full_snapshot_from_path(path, cli.force_snapshot)
            .await
            .map_err(startup_error)?;
        tracing::info!(?restored, snapshot = %path.display(), "restored a full-storage snapshot");
        return Ok(());
    }
    for mapping in &cli.snapshots {
        node.recover_collection_from_path(&mapping.collection, &mapping.path, cli.force_snapshot)
            .await
            .map_err(startup_error)?;
        tracing::info!(collection = %mapping.collection, snapshot = %mapping.path.display(), "restored a collection snapshot");
    }
    Ok(())
}

/// One line for the operator: the error without Qdrant's class prefix when it says it all.
fn startup_error(err: shoal::error::Error) -> anyhow::Error {
    match err {
        shoal::error::Error::AlreadyExists(message) => anyhow::anyhow!(message),
        other => anyhow::anyhow!("snapshot recovery failed: {other}"),
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::error!(%err, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            token.cancel();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    token.cancel();
}

fn init_tracing(level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(level.unwrap_or("info").to_lowercase())
    });
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
