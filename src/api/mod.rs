//! The only layer that knows about transports. It parses, validates and converts
//! requests, calls the [`crate::node::Node`], and wraps answers and errors in each
//! protocol's shape. It never touches files.
pub mod peer;
pub mod rest;
