//! Collections: configuration, point shapes, and (soon) routing of points to shards.
pub mod config;
pub mod point;
