//! Command-line flags, named as Qdrant names them.

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "shoal",
    version,
    about = "A clustered vector database node that speaks Qdrant's API"
)]
pub struct Cli {
    /// Extra configuration file, merged over config/config.yaml and under QDRANT__* env vars.
    #[arg(long, value_name = "PATH")]
    pub config_path: Option<PathBuf>,

    /// Restore collection NAME from the snapshot file at PATH before serving
    /// (repeatable). PATH:NAME is split at the last colon.
    #[arg(long = "snapshot", visible_alias = "collection-snapshot", value_name = "PATH:NAME", value_parser = parse_snapshot_mapping)]
    pub snapshots: Vec<SnapshotMapping>,

    /// Restore every collection and alias of a full-storage snapshot before serving.
    /// Takes precedence over --snapshot.
    #[arg(long, value_name = "PATH")]
    pub storage_snapshot: Option<PathBuf>,

    /// Let --snapshot and --storage-snapshot replace existing collections and aliases.
    #[arg(short = 'f', long = "force-snapshot", visible_alias = "force_snapshot")]
    pub force_snapshot: bool,

    /// Where the other peers reach this peer's peer service, e.g. http://10.0.0.7:6335.
    /// Required for the first peer of a new cluster; a joining peer may leave it out and let
    /// the bootstrap peer derive it from the address it calls from and cluster.p2p.port.
    /// Needs cluster.enabled=true.
    #[arg(long, env = "QDRANT_URI", value_name = "URI")]
    pub uri: Option<String>,

    /// The peer service URI of any member of an existing cluster: this peer joins that
    /// cluster. Ignored once this peer's storage belongs to a cluster (a restart rejoins
    /// with its stored id and log). Needs cluster.enabled=true.
    #[arg(long, env = "QDRANT_BOOTSTRAP", value_name = "URI")]
    pub bootstrap: Option<String>,

    /// Accepted for compatibility with Qdrant's command line; shoal sends no telemetry.
    #[arg(long)]
    pub disable_telemetry: bool,
}

/// `--snapshot PATH:NAME`.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotMapping {
    pub path: PathBuf,
    pub collection: String,
}

fn parse_snapshot_mapping(value: &str) -> Result<SnapshotMapping, String> {
    let (path, name) = value.rsplit_once(':').ok_or_else(|| {
        format!("`{value}` must be PATH:NAME (the snapshot file, a colon, the collection name)")
    })?;
    if path.is_empty() {
        return Err(format!("`{value}`: the snapshot path is empty"));
    }
    if name.is_empty() || name.contains('/') || name.contains('\\') {
        return Err(format!(
            "`{value}`: `{name}` is not a valid collection name"
        ));
    }
    Ok(SnapshotMapping {
        path: PathBuf::from(path),
        collection: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_split_at_the_last_colon() {
        let m = parse_snapshot_mapping("/a:b/c.snapshot:books").unwrap();
        assert_eq!(m.path, PathBuf::from("/a:b/c.snapshot"));
        assert_eq!(m.collection, "books");
        for bad in ["nocolon", ":name", "/p:", "/p:a/b"] {
            assert!(parse_snapshot_mapping(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn force_has_three_spellings() {
        for flag in ["--force-snapshot", "--force_snapshot", "-f"] {
            let cli = Cli::try_parse_from(["shoal", flag, "--snapshot", "/x:c"]).unwrap();
            assert!(cli.force_snapshot, "{flag}");
            assert_eq!(cli.snapshots.len(), 1);
        }
    }

    #[test]
    fn uri_and_bootstrap_flags() {
        let cli = Cli::try_parse_from([
            "shoal",
            "--uri",
            "http://a:6335",
            "--bootstrap",
            "http://b:6335",
        ])
        .unwrap();
        assert_eq!(cli.uri.as_deref(), Some("http://a:6335"));
        assert_eq!(cli.bootstrap.as_deref(), Some("http://b:6335"));
    }
}
