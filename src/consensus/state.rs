//! PLACEHOLDER (consensus branch): the pure cluster-state machine.
//!
//! The integrator replaces this file with the real `ClusterState`. The driver depends only on
//! `Serialize + DeserializeOwned + Default + Clone` and a deterministic
//! `apply(&mut self, &ClusterOp) -> Result<Vec<Effect>>` (see `impl StateMachine` in mod.rs).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::effect::Effect;
use super::op::ClusterOp;
use crate::error::{Error, Result};

/// The replicated cluster metadata.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq, Eq)]
pub struct ClusterState {
    /// A toy key-value map standing in for collections, aliases and placements.
    pub values: BTreeMap<String, String>,
}

impl ClusterState {
    /// Applies one committed operation. Pure: no disk, no network, no clock. On `Err` the state
    /// is left unchanged.
    pub fn apply(&mut self, op: &ClusterOp) -> Result<Vec<Effect>> {
        match op {
            ClusterOp::Put { key, value } => {
                self.values.insert(key.clone(), value.clone());
                Ok(vec![Effect::KeyChanged { key: key.clone() }])
            }
            ClusterOp::Fail { msg } => Err(Error::BadInput(msg.clone())),
        }
    }
}
