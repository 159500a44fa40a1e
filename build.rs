//! Compiles proto/ into Rust with protox (a pure-Rust protobuf compiler), so building
//! shoal never needs a system `protoc`: the peer service (`proto/peer.proto`) and
//! Qdrant's public API (`proto/qdrant/`). The public API's descriptors are also written
//! to `$OUT_DIR/qdrant_descriptor.bin` for gRPC reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let peer = protox::compile(["proto/peer.proto"], ["proto"])?;
    // Snapshot chunks pass through as `Bytes`, without a copy per chunk.
    tonic_prost_build::configure()
        .bytes(".shoal.peer.SnapshotChunk.data")
        .compile_fds(peer)?;

    let public = protox::compile(["qdrant.proto"], ["proto/qdrant"])?;
    std::fs::write(
        out_dir.join("qdrant_descriptor.bin"),
        public.encode_to_vec(),
    )?;
    // Undecodable requests answer InvalidArgument (see src/api/grpc/codec.rs). The client
    // half is used by shoal-bench and the tests.
    tonic_prost_build::configure()
        .codec_path("crate::api::grpc::codec::QdrantCodec")
        .compile_fds(public)?;
    Ok(())
}
