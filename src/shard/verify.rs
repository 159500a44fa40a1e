//! Verification of an unpacked shard directory before it replaces a live shard.
