//! Cluster metadata through Raft (module doc completed with the driver).
pub mod effect;
pub mod op;
pub mod state;
