//! The seam between the Raft driver and the network.
//!
//! The driver thread must never wait on a socket, so [`RaftTransport::send`] only hands a
//! message over (to a per-peer queue, a channel, ...) and returns. Delivery is best effort:
//! Raft retransmits whatever is lost. A transport that learns a peer is unreachable, or that a
//! snapshot it carried finished or failed, reports it back through
//! [`ConsensusOf::report_unreachable`](super::ConsensusOf::report_unreachable) and
//! [`ConsensusOf::report_snapshot`](super::ConsensusOf::report_snapshot).
//!
//! Inbound messages take the opposite path: the peer service decodes nothing itself and calls
//! [`ConsensusOf::step`](super::ConsensusOf::step) with the prost-0.11 bytes it received.

use raft::eraftpb::Message;

/// Outbound Raft messages. Implementations must not block.
pub trait RaftTransport: Send + Sync {
    /// Queues `msg` for delivery to peer `msg.to`.
    fn send(&self, msg: Message);
}

/// The transport of a node that has no peers: a single-voter group never needs to send, so
/// anything that shows up (for example appends to a learner that was added but never wired)
/// is dropped and logged.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPeers;

impl RaftTransport for NoPeers {
    fn send(&self, msg: Message) {
        tracing::debug!(
            to = msg.to,
            msg_type = msg.msg_type,
            "no transport to peers; raft message dropped"
        );
    }
}
