//! The joining side of the join handshake: ask a member of an existing cluster (the
//! `--bootstrap` peer) to add this peer, retrying for a bounded time.
//!
//! The bootstrap peer may be starting up, electing a leader, or busy with another
//! membership change; all of those are worth another try. An answer that says this peer
//! can never join as asked (its id or URI belongs to another peer, a malformed URI, a peer
//! that is not clustered, a missing or wrong cluster secret) ends the attempt at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tonic::Code;

use super::proto::raft_client::RaftClient;
use super::proto::JoinRequest;
use super::{describe_status, PeerSecurity, MAX_PEER_MESSAGE_BYTES};
use crate::error::{Error, Result};
use crate::types::PeerId;

/// Pause between two attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// What the cluster told a joining peer.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinAnswer {
    /// The cluster's founding voter: the joiner's initial membership.
    pub first_peer_id: PeerId,
    /// Every known peer's URI, the joiner's included.
    pub peers: BTreeMap<PeerId, String>,
    /// The URI recorded for the joiner.
    pub uri: String,
}

/// How to reach the bootstrap peer.
#[derive(Debug, Clone)]
pub struct JoinConfig {
    /// Give up after this long.
    pub total_timeout: Duration,
    /// One call may take this long (the bootstrap peer waits until the change is applied).
    pub call_timeout: Duration,
    pub connect_timeout: Duration,
    /// The cluster secret and TLS of the calls.
    pub security: PeerSecurity,
}

/// Asks the peer at `bootstrap` to add peer `peer_id`, reachable at `uri` (or, when `None`,
/// at the address it calls from and `p2p_port`).
pub async fn join(
    bootstrap: &str,
    peer_id: PeerId,
    uri: Option<&str>,
    p2p_port: u16,
    config: &JoinConfig,
) -> Result<JoinAnswer> {
    let endpoint = config
        .security
        .endpoint(bootstrap)
        .map_err(|e| Error::BadInput(format!("--bootstrap: {e}")))?
        .connect_timeout(config.connect_timeout)
        .timeout(config.call_timeout)
        .tcp_nodelay(true);
    let mut client = RaftClient::new(config.security.channel(endpoint))
        .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
    let request = JoinRequest {
        peer_id,
        uri: uri.unwrap_or_default().to_string(),
        p2p_port: u32::from(p2p_port),
    };

    let deadline = Instant::now() + config.total_timeout;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let last_error = match client.join(request.clone()).await {
            Ok(answer) => {
                let answer = answer.into_inner();
                return Ok(JoinAnswer {
                    first_peer_id: answer.first_peer_id,
                    peers: answer.peers.into_iter().collect(),
                    uri: answer.uri,
                });
            }
            Err(status) => match status.code() {
                Code::InvalidArgument => return Err(Error::BadInput(refused(bootstrap, &status))),
                Code::AlreadyExists => {
                    return Err(Error::AlreadyExists(refused(bootstrap, &status)))
                }
                Code::FailedPrecondition | Code::PermissionDenied => {
                    return Err(Error::BadRequest(refused(bootstrap, &status)))
                }
                // A wrong or missing cluster secret does not get better by retrying.
                Code::Unauthenticated => {
                    return Err(Error::Unauthorized(refused(bootstrap, &status)))
                }
                _ => describe_status(&status),
            },
        };
        if Instant::now() + RETRY_PAUSE >= deadline {
            return Err(Error::Unavailable(format!(
                "cannot join the cluster through {bootstrap}: no successful answer within {} s ({attempts} attempts); last error: {last_error}",
                config.total_timeout.as_secs()
            )));
        }
        tracing::info!(bootstrap, error = %last_error, "join attempt failed; retrying");
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// The bootstrap peer's reason, without the error class prefix our own error adds again.
fn refused(bootstrap: &str, status: &tonic::Status) -> String {
    let message = status.message();
    let reason = ["Wrong input: ", "Bad request: ", "Forbidden: "]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .unwrap_or(message);
    format!("{bootstrap} refused to add this peer: {reason}")
}
