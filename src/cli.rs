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

    /// Accepted for compatibility with Qdrant's command line; shoal sends no telemetry.
    #[arg(long)]
    pub disable_telemetry: bool,
}
