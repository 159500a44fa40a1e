//! The peer-to-peer wire: the generated `shoal.peer` gRPC types, the outbound Raft
//! transport, and the client side of the join handshake.
//!
//! Everything here speaks to *other peers* on their peer port (`cluster.p2p.port`); the
//! server side of the same service is `api::peer`. Raft messages cross the wire as opaque
//! bytes (the prost-0.11 encoding of `eraftpb::Message`), so the prost version of raft-rs
//! never meets the prost version of tonic.
//!
//! - [`GrpcTransport`] ([`raft`]): implements [`RaftTransport`](crate::consensus::transport::RaftTransport)
//!   with one sender task and one bounded queue per peer, so the Raft driver thread never
//!   waits on the network.
//! - [`join`]: asks a member of an existing cluster to add this peer.
//! - [`security`]: the cluster secret and TLS every outgoing peer channel carries.

pub mod join;
pub mod raft;
pub mod security;

pub use raft::{GrpcTransport, SendFailures, TransportConfig};
pub use security::{PeerChannel, PeerSecurity, PEER_KEY_HEADER};

/// Code generated from `proto/peer.proto`.
pub mod proto {
    #![allow(clippy::all)]
    tonic::include_proto!("shoal.peer");
}

/// Largest message either side of the peer service accepts: Raft snapshots carry the whole
/// cluster state in one message.
pub const MAX_PEER_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Checks a peer URI and returns it without a trailing slash, so that two spellings of one
/// address compare equal.
pub fn normalize_uri(uri: &str) -> crate::error::Result<String> {
    use crate::error::Error;
    let trimmed = uri.trim().trim_end_matches('/');
    let parsed: tonic::codegen::http::Uri = trimmed
        .parse()
        .map_err(|e| Error::BadInput(format!("`{uri}` is not a valid peer URI: {e}")))?;
    match parsed.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(Error::BadInput(format!(
                "peer URI `{uri}` must start with http:// or https://"
            )))
        }
    }
    if parsed.host().is_none_or(str::is_empty) {
        return Err(Error::BadInput(format!("peer URI `{uri}` has no host")));
    }
    if parsed.path() != "/" && !parsed.path().is_empty() {
        return Err(Error::BadInput(format!(
            "peer URI `{uri}` must not have a path (scheme, host and port only)"
        )));
    }
    Ok(trimmed.to_string())
}

/// A status as one line: its message, then each cause in its source chain that the text
/// does not already say (tonic nests "transport error" and "tcp connect error" around the
/// operating system's reason).
pub(crate) fn describe_status(status: &tonic::Status) -> String {
    use std::error::Error as _;
    let mut text = status.message().to_string();
    let mut source = status.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::normalize_uri;

    #[test]
    fn uris_are_checked_and_normalized() {
        assert_eq!(
            normalize_uri("http://10.0.0.1:6335/").unwrap(),
            "http://10.0.0.1:6335"
        );
        assert_eq!(
            normalize_uri(" https://peer-a:6335 ").unwrap(),
            "https://peer-a:6335"
        );
        for bad in [
            "",
            "peer:6335",
            "ftp://a:1",
            "http://",
            "http://a:1/x",
            "not a uri",
        ] {
            assert!(normalize_uri(bad).is_err(), "{bad}");
        }
    }
}
