//! The client side of the peer service `Shards`: applies an op to, or reads from, a shard
//! replica held by another peer.
//!
//! One tonic channel per peer URI is built lazily and kept (channels reconnect by
//! themselves). Every call is bounded by `cluster.grpc_timeout_ms` and connecting by
//! `cluster.connection_timeout_ms`, so a dead peer costs one timeout, never a hang.
//! A shard snapshot pushed by a transfer ([`ShardClients::install_snapshot`]) may take
//! much longer than one call: it goes over a second channel per peer without the call
//! timeout, kept alive by HTTP/2 pings so that a vanished peer still ends it.
//! Failures come back as [`Error`]s: the remote peer's own error class where it answered
//! (a user error stays a user error), [`Error::Unavailable`] naming the peer where it did
//! not.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tonic::transport::Endpoint;
use tonic::Code;

use super::wire::{decode, encode, ShardRead, ShardReadResult};
use crate::error::{Error, Result};
use crate::shard::digest::{RangeDigest, ShardDigest, DIGEST_RANGES};
use crate::shard::ops::{self, ShardOp};
use crate::transport::proto::shards_client::ShardsClient;
use crate::transport::proto::{
    self as proto, DigestRequest, DrainRequest, ShardOpRequest, ShardReadRequest, SnapshotChunk,
};
use crate::transport::{describe_status, PeerChannel, PeerSecurity, MAX_PEER_MESSAGE_BYTES};
use crate::types::{PeerId, ShardId};

/// Timeouts of the calls to other peers' replicas.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    pub call_timeout: Duration,
    pub connect_timeout: Duration,
    /// The cluster secret and TLS of the calls.
    pub security: PeerSecurity,
}

/// A replica on another peer: who it is and where to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteReplica {
    pub peer: PeerId,
    pub uri: String,
    pub collection: String,
    pub shard: ShardId,
}

/// Calls to other peers' replicas; see the module doc.
pub struct ShardClients {
    config: RemoteConfig,
    channels: Mutex<HashMap<String, PeerChannel>>,
    /// Channels for long streams: no call timeout.
    stream_channels: Mutex<HashMap<String, PeerChannel>>,
}

/// How often a long stream pings its peer, and how long it waits for the answer.
const STREAM_KEEPALIVE: Duration = Duration::from_secs(10);
/// HTTP/2 flow-control window of a long stream: large, so that one stream fills a fast
/// link (the default 64 KiB window caps a loopback stream at a few tens of MiB/s).
pub const STREAM_WINDOW: u32 = 8 << 20;

impl ShardClients {
    pub fn new(config: RemoteConfig) -> ShardClients {
        ShardClients {
            config,
            channels: Mutex::new(HashMap::new()),
            stream_channels: Mutex::new(HashMap::new()),
        }
    }

    /// Pushes a shard snapshot to the replica (the `snapshot` transfer method): `chunks`
    /// must start with the header and end with the message marked `last` (see `proto/peer.proto`).
    /// Returns the target's point count once it installed the snapshot.
    pub async fn install_snapshot(
        &self,
        replica: &RemoteReplica,
        chunks: tokio::sync::mpsc::Receiver<SnapshotChunk>,
    ) -> Result<u64> {
        let stream = futures::stream::unfold(chunks, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        });
        let channel = self.channel(&self.stream_channels, replica, |endpoint| {
            endpoint
                .initial_stream_window_size(Some(STREAM_WINDOW))
                .initial_connection_window_size(Some(STREAM_WINDOW))
                .http2_keep_alive_interval(STREAM_KEEPALIVE)
                .keep_alive_timeout(STREAM_KEEPALIVE)
                .keep_alive_while_idle(true)
        })?;
        let answer = ShardsClient::new(channel)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .install_snapshot(stream)
            .await
            .map_err(|status| error_of(replica, &status))?;
        Ok(answer.into_inner().points)
    }

    /// Applies `op` (serde JSON bytes of a [`ShardOp`]) to the replica; returns the
    /// replica's operation id.
    pub async fn apply(
        &self,
        replica: &RemoteReplica,
        op: &[u8],
        wait: bool,
        min_applied_index: u64,
    ) -> Result<u64> {
        let request = ShardOpRequest {
            collection: replica.collection.clone(),
            shard_id: replica.shard,
            op: op.to_vec(),
            wait,
            min_applied_index,
        };
        let answer = self
            .client(replica)?
            .apply(request)
            .await
            .map_err(|status| error_of(replica, &status))?;
        Ok(answer.into_inner().operation_id)
    }

    /// `Shards.Drain` on the replica's peer (see `inflight.rs`).
    pub async fn drain(&self, replica: &RemoteReplica, index: u64) -> Result<()> {
        let request = DrainRequest {
            collection: replica.collection.clone(),
            shard_id: replica.shard,
            index,
        };
        self.client(replica)?
            .drain(request)
            .await
            .map_err(|status| error_of(replica, &status))?;
        Ok(())
    }

    /// Runs `read` on the replica.
    pub async fn read(
        &self,
        replica: &RemoteReplica,
        read: &ShardRead,
        min_applied_index: u64,
    ) -> Result<ShardReadResult> {
        let request = ShardReadRequest {
            collection: replica.collection.clone(),
            shard_id: replica.shard,
            read: encode(read)?,
            min_applied_index,
        };
        let answer = self
            .client(replica)?
            .read(request)
            .await
            .map_err(|status| error_of(replica, &status))?;
        decode(&answer.into_inner().result, "shard read result")
            .map_err(|e| Error::service(format!("peer {}: {e}", replica.peer)))
    }

    /// A digest of the replica (`Shards.Digest`, see `consistency.rs`).
    pub async fn digest(
        &self,
        replica: &RemoteReplica,
        min_applied_index: u64,
    ) -> Result<ShardDigest> {
        let request = DigestRequest {
            collection: replica.collection.clone(),
            shard_id: replica.shard,
            min_applied_index,
        };
        let answer = self
            .client(replica)?
            .digest(request)
            .await
            .map_err(|status| error_of(replica, &status))?;
        digest_from_proto(answer.into_inner())
            .map_err(|e| Error::service(format!("peer {}: {e}", replica.peer)))
    }

    fn client(&self, replica: &RemoteReplica) -> Result<ShardsClient<PeerChannel>> {
        let timeout = self.config.call_timeout;
        let channel = self.channel(&self.channels, replica, |endpoint| {
            endpoint.timeout(timeout)
        })?;
        Ok(ShardsClient::new(channel)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES))
    }
}

impl ShardClients {
    /// The cached channel to the replica's peer in `cache`, built with `configure` the
    /// first time.
    fn channel(
        &self,
        cache: &Mutex<HashMap<String, PeerChannel>>,
        replica: &RemoteReplica,
        configure: impl FnOnce(Endpoint) -> Endpoint,
    ) -> Result<PeerChannel> {
        let mut channels = cache.lock();
        if let Some(channel) = channels.get(&replica.uri) {
            return Ok(channel.clone());
        }
        let security = &self.config.security;
        let endpoint = security
            .endpoint(&replica.uri)
            .map_err(|e| Error::Unavailable(format!("peer {}: {e}", replica.peer)))?
            .connect_timeout(self.config.connect_timeout)
            .tcp_nodelay(true);
        let channel = security.channel(configure(endpoint));
        channels.insert(replica.uri.clone(), channel.clone());
        Ok(channel)
    }
}

/// Encodes an op for [`ShardClients::apply`] once, however many replicas it goes to: the
/// WAL's binary record (`shard/ops.rs`: vectors as raw little-endian floats, payloads as
/// JSON text), so neither side formats or parses floats as text.
pub fn encode_op(op: &ShardOp) -> Vec<u8> {
    let mut out = Vec::new();
    ops::encode(0, op, &mut out);
    out
}

/// Decodes what [`encode_op`] made; bad bytes are the sender's fault.
pub fn decode_op(bytes: &[u8]) -> Result<ShardOp> {
    ops::decode(bytes)
        .map(|(_, op)| op)
        .map_err(|e| Error::BadInput(format!("undecodable shard operation: {}", e.0)))
}

/// A digest as `Shards.Digest` answers it.
pub fn digest_to_proto(digest: &ShardDigest) -> proto::DigestResponse {
    proto::DigestResponse {
        ranges: digest
            .ranges
            .iter()
            .map(|r| proto::RangeDigest {
                count: r.count,
                hash: r.hash,
            })
            .collect(),
        last_seq: digest.last_seq,
    }
}

/// A digest from another peer's answer, which must have exactly [`DIGEST_RANGES`] ranges.
pub fn digest_from_proto(
    answer: proto::DigestResponse,
) -> std::result::Result<ShardDigest, String> {
    if answer.ranges.len() != DIGEST_RANGES {
        return Err(format!(
            "a shard digest with {} ranges (expected {DIGEST_RANGES})",
            answer.ranges.len()
        ));
    }
    Ok(ShardDigest {
        ranges: answer
            .ranges
            .into_iter()
            .map(|r| RangeDigest {
                count: r.count,
                hash: r.hash,
            })
            .collect(),
        last_seq: answer.last_seq,
    })
}

/// The error a failed call stands for. A peer that answered keeps its error class (its
/// message already carries the class prefix, which is stripped so it is not said twice);
/// a peer that did not answer is unavailable.
fn error_of(replica: &RemoteReplica, status: &tonic::Status) -> Error {
    let message = status.message();
    let reason = message
        .split_once(": ")
        .map_or(message, |(_, rest)| rest)
        .to_string();
    let at = format!("peer {}", replica.peer);
    match status.code() {
        Code::InvalidArgument => Error::BadInput(reason),
        Code::FailedPrecondition => Error::BadRequest(reason),
        Code::NotFound => Error::NotFound(format!("{at}: {reason}")),
        Code::ResourceExhausted => Error::InsufficientStorage(format!("{at}: {reason}")),
        Code::Internal => Error::Service(format!("{at}: {reason}")),
        Code::DeadlineExceeded => Error::Unavailable(format!(
            "{at} at {} did not answer in time: {}",
            replica.uri,
            describe_status(status)
        )),
        _ => Error::Unavailable(format!(
            "{at} at {} is unreachable: {}",
            replica.uri,
            describe_status(status)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica() -> RemoteReplica {
        RemoteReplica {
            peer: 9,
            uri: "http://127.0.0.1:1".into(),
            collection: "c".into(),
            shard: 0,
        }
    }

    #[test]
    fn user_errors_keep_their_class_without_a_second_prefix() {
        let status = tonic::Status::invalid_argument("Wrong input: bad vector");
        let err = error_of(&replica(), &status);
        assert_eq!(err.to_string(), "Wrong input: bad vector");
    }

    #[test]
    fn silence_is_unavailable_and_names_the_peer() {
        let status = tonic::Status::unavailable("tcp connect error");
        let err = error_of(&replica(), &status);
        assert!(matches!(err, Error::Unavailable(_)));
        assert!(
            err.to_string().contains("peer 9 at http://127.0.0.1:1"),
            "{err}"
        );
    }

    #[test]
    fn digests_cross_the_wire_unchanged_and_odd_ones_are_refused() {
        let mut digest = ShardDigest::empty(42);
        digest.add(&crate::types::PointId::Num(7), 0xDEAD_BEEF);
        let back = digest_from_proto(digest_to_proto(&digest)).unwrap();
        assert_eq!(back, digest);
        let mut short = digest_to_proto(&digest);
        short.ranges.pop();
        assert!(digest_from_proto(short).is_err());
        let mut long = digest_to_proto(&digest);
        long.ranges.push(proto::RangeDigest::default());
        assert!(digest_from_proto(long).is_err());
    }

    #[tokio::test]
    async fn a_dead_peer_costs_one_bounded_call() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let clients = ShardClients::new(RemoteConfig {
            call_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(200),
            security: PeerSecurity::none(),
        });
        let replica = RemoteReplica {
            uri: format!("http://127.0.0.1:{port}"),
            ..replica()
        };
        let started = std::time::Instant::now();
        let err = clients
            .read(&replica, &ShardRead::Count { filter: None }, 0)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unavailable(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
