//! PLACEHOLDER (consensus branch): what applying a `ClusterOp` asks the node to do.
//!
//! The integrator replaces this file with the real `Effect` (create/drop shards, change replica
//! states, ...). Effects are executed by the integrator's applier after the driver has made the
//! new state durable, so they must be idempotent: a crash can replay them.

/// One side effect of an applied operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// `key` now has a new value.
    KeyChanged { key: String },
}
