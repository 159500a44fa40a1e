//! Snapshots: archive format, naming, checksums, and where snapshot files live.
pub mod archive;
pub mod bounded;
pub mod checksum;
pub mod entries;
pub mod index;
pub mod layout;
pub mod naming;
pub mod source;
pub mod store;
pub mod syncer;
pub mod upload;
