//! Outbound Raft messages over the peer gRPC service.
//!
//! [`RaftTransport::send`] runs on the consensus driver thread and must never wait, so it
//! only puts the message on the destination peer's bounded queue (`try_send`) and returns.
//! One tokio task per peer drains that queue and makes one `Raft.Send` call per message,
//! over a channel built lazily from the peer's URI in the consensus address book (rebuilt
//! when the URI changes).
//!
//! Loss is fine, Raft retransmits: a full queue drops the new message, and after a failed
//! call the messages already queued for that peer are dropped too (they would only fail
//! one by one, each after a connection attempt). What Raft must hear about is reported back
//! through the consensus handle: every failed delivery as `report_unreachable` (the leader
//! then probes instead of streaming), and every snapshot message's fate as
//! `report_snapshot` (otherwise the leader would wait for that snapshot forever).
//!
//! Failed deliveries are also counted per peer URI for `GET /cluster`
//! (`message_send_failures`); a successful call clears its peer's entry, as in Qdrant.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use prost_for_raft::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;

use super::proto::raft_client::RaftClient;
use super::proto::RaftMessage;
use super::{describe_status, PeerChannel, PeerSecurity, MAX_PEER_MESSAGE_BYTES};
use crate::consensus::transport::RaftTransport;
use crate::consensus::Consensus;
use crate::types::PeerId;

/// Queue and timeout settings of the transport.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Messages queued per peer before new ones are dropped.
    pub queue_size: usize,
    /// How long one `Raft.Send` call may take.
    pub call_timeout: Duration,
    /// How long connecting to a peer may take.
    pub connect_timeout: Duration,
    /// The cluster secret and TLS of the calls.
    pub security: PeerSecurity,
}

/// Failed deliveries to one peer since the last successful one.
#[derive(Debug, Clone, PartialEq)]
pub struct SendFailures {
    pub count: usize,
    pub latest_error: String,
    pub latest_error_at: SystemTime,
}

/// The Raft transport of a clustered node; see the module doc.
pub struct GrpcTransport {
    shared: Arc<Shared>,
}

struct Shared {
    runtime: tokio::runtime::Handle,
    config: TransportConfig,
    /// Set once consensus has started; until then messages cannot be addressed and are dropped.
    consensus: OnceLock<Consensus>,
    queues: Mutex<HashMap<PeerId, mpsc::Sender<Message>>>,
    /// Keyed by peer URI.
    failures: Mutex<BTreeMap<String, SendFailures>>,
}

impl GrpcTransport {
    /// A transport whose sender tasks run on `runtime` (the driver thread is not a tokio
    /// thread, so the handle is kept here).
    pub fn new(runtime: tokio::runtime::Handle, config: TransportConfig) -> GrpcTransport {
        GrpcTransport {
            shared: Arc::new(Shared {
                runtime,
                config,
                consensus: OnceLock::new(),
                queues: Mutex::new(HashMap::new()),
                failures: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Connects the transport to the consensus it serves: the address book to resolve peers
    /// and the handle to report delivery failures to. Later calls are ignored.
    pub fn attach(&self, consensus: Consensus) {
        let _ = self.shared.consensus.set(consensus);
    }

    /// Current delivery failures by peer URI.
    pub fn failures(&self) -> BTreeMap<String, SendFailures> {
        self.shared.failures.lock().clone()
    }
}

impl RaftTransport for GrpcTransport {
    fn send(&self, msg: Message) {
        let to = msg.to;
        let queue = {
            let mut queues = self.shared.queues.lock();
            queues
                .entry(to)
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(self.shared.config.queue_size.max(1));
                    self.shared
                        .runtime
                        .spawn(run_sender(Arc::clone(&self.shared), to, rx));
                    tx
                })
                .clone()
        };
        if let Err(err) = queue.try_send(msg) {
            let (full, msg) = match err {
                mpsc::error::TrySendError::Full(msg) => (true, msg),
                mpsc::error::TrySendError::Closed(msg) => (false, msg),
            };
            if !full {
                // The sender task is gone (the runtime is shutting down): forget the queue.
                self.shared.queues.lock().remove(&to);
            }
            tracing::debug!(to, msg_type = msg.msg_type, full, "raft message dropped");
            self.shared.dropped(&msg);
        }
    }
}

/// What became of one message.
#[derive(PartialEq, Eq)]
enum Outcome {
    Delivered,
    Failed,
    /// The address book has no URI for the peer (removed, or never known).
    NoAddress,
}

/// One peer's sender: delivers its queue in order, one call per message. Ends when the
/// peer has no address any more (a removed peer); a later message starts a new sender.
async fn run_sender(shared: Arc<Shared>, peer: PeerId, mut queue: mpsc::Receiver<Message>) {
    let mut link: Option<(String, RaftClient<PeerChannel>)> = None;
    while let Some(msg) = queue.recv().await {
        let is_snapshot = msg.msg_type == MessageType::MsgSnapshot as i32;
        let outcome = shared.deliver(peer, &mut link, &msg).await;
        if is_snapshot {
            shared.report_snapshot(peer, outcome == Outcome::Delivered);
        }
        if outcome == Outcome::Delivered {
            continue;
        }
        if outcome == Outcome::NoAddress {
            shared.queues.lock().remove(&peer);
            queue.close();
        }
        // What is queued behind would fail the same way; Raft sends again anyway.
        while let Ok(stale) = queue.try_recv() {
            shared.dropped(&stale);
        }
        if outcome == Outcome::NoAddress {
            return;
        }
    }
}

impl Shared {
    /// Sends one message; records and reports the outcome.
    async fn deliver(
        &self,
        peer: PeerId,
        link: &mut Option<(String, RaftClient<PeerChannel>)>,
        msg: &Message,
    ) -> Outcome {
        let Some(consensus) = self.consensus.get() else {
            return Outcome::Failed;
        };
        let Some(uri) = consensus.peers().get(&peer).cloned() else {
            tracing::debug!(peer, "no address known for this peer; raft message dropped");
            consensus.report_unreachable(peer);
            return Outcome::NoAddress;
        };
        if link.as_ref().is_none_or(|(known, _)| *known != uri) {
            match self.client(&uri) {
                Ok(client) => *link = Some((uri.clone(), client)),
                Err(err) => {
                    self.record_failure(&uri, err);
                    consensus.report_unreachable(peer);
                    return Outcome::Failed;
                }
            }
        }
        let Some((_, client)) = link.as_mut() else {
            return Outcome::Failed;
        };
        let request = RaftMessage {
            message: msg.encode_to_vec(),
        };
        match client.send(request).await {
            Ok(_) => {
                self.failures.lock().remove(&uri);
                Outcome::Delivered
            }
            Err(status) => {
                let error = format!("{:?}: {}", status.code(), describe_status(&status));
                self.record_failure(&uri, error);
                consensus.report_unreachable(peer);
                Outcome::Failed
            }
        }
    }

    fn client(&self, uri: &str) -> Result<RaftClient<PeerChannel>, String> {
        let security = &self.config.security;
        let endpoint = security
            .endpoint(uri)?
            .connect_timeout(self.config.connect_timeout)
            .timeout(self.config.call_timeout)
            .tcp_nodelay(true);
        Ok(RaftClient::new(security.channel(endpoint))
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES))
    }

    fn record_failure(&self, uri: &str, error: String) {
        let mut failures = self.failures.lock();
        let entry = failures
            .entry(uri.to_string())
            .or_insert_with(|| SendFailures {
                count: 0,
                latest_error: String::new(),
                latest_error_at: SystemTime::now(),
            });
        if entry.count == 0 {
            // Once per outage; the count tells the rest.
            tracing::warn!(peer_uri = uri, %error, "cannot deliver raft messages to a peer");
        }
        entry.count += 1;
        entry.latest_error = error;
        entry.latest_error_at = SystemTime::now();
    }

    /// A message that will never be sent: a snapshot's sender must hear that it failed.
    fn dropped(&self, msg: &Message) {
        if msg.msg_type == MessageType::MsgSnapshot as i32 {
            self.report_snapshot(msg.to, false);
        }
    }

    fn report_snapshot(&self, peer: PeerId, delivered: bool) {
        if let Some(consensus) = self.consensus.get() {
            consensus.report_snapshot(peer, delivered);
        }
    }
}
