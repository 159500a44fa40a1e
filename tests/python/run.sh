#!/usr/bin/env bash
# Runs the qdrant-client compatibility suite against a shoal binary.
#
#   SHOAL_BIN=path/to/shoal tests/python/run.sh [extra pytest args]
#
# Creates .venv in the repo root on first use and installs the pinned
# requirements; later runs skip pip unless requirements.txt changed.
# Exit code is pytest's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.venv"
req="$here/requirements.txt"
stamp="$venv/.shoal-pytests-requirements.sha256"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi

want="$(sha256sum "$req" | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    echo "$want" > "$stamp"
fi

if [ -z "${SHOAL_BIN:-}" ]; then
    SHOAL_BIN="$root/target/debug/shoal"
    # A build with CARGO_TARGET_DIR set leaves the binary elsewhere.
    if [ ! -x "$SHOAL_BIN" ] && [ -n "${CARGO_TARGET_DIR:-}" ] && [ -x "$CARGO_TARGET_DIR/debug/shoal" ]; then
        SHOAL_BIN="$CARGO_TARGET_DIR/debug/shoal"
    fi
fi
export SHOAL_BIN
case "$SHOAL_BIN" in
    /*) ;;
    *) SHOAL_BIN="$root/$SHOAL_BIN" ;;
esac

# Run the whole suite unless a test path (file, dir or node id) was given.
targets=("$here")
for arg in "$@"; do
    case "$arg" in
        -*) ;;
        *::*) targets=() ;;
        *) if [ -e "$arg" ]; then targets=(); fi ;;
    esac
done

cd "$root"
set +e
"$venv/bin/python" -m pytest "${targets[@]}" "$@"
rc=$?
set -e
exit $rc
