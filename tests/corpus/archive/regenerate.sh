#!/bin/sh
# Regenerates the seed archives of tests/archive_fuzz.rs (indexed, transfer, legacy
# without index, legacy with a directory entry) with shoal's own archive writer.
set -eu
cd "$(dirname "$0")/../../.."
cargo test --test archive_fuzz regenerate_corpus -- --ignored --exact
ls -l tests/corpus/archive/*.tar
