#!/usr/bin/env bash
# Runs the docker end-to-end tests (tests/docker) on compose projects of the top-level
# docker-compose.yml, with the python venv of tests/python/run.sh.
#
#   tests/docker/run.sh [extra pytest args]
#
# Needs a Docker engine, `docker compose` or `docker-compose`, and the image named by
# SHOAL_IMAGE (default shoal:local; make it with scripts/docker-image). Each compose
# project is named SHOAL_E2E_PREFIX<n> (a fresh prefix per run); whatever the tests leave
# behind, even when killed, is removed with `down -v` on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif docker-compose version >/dev/null 2>&1; then
    compose=(docker-compose)
else
    echo "SKIPPED docker end-to-end tests: neither \`docker compose\` nor \`docker-compose\` is installed"
    exit 0
fi

export SHOAL_IMAGE="${SHOAL_IMAGE:-shoal:local}"
if ! docker image inspect "$SHOAL_IMAGE" >/dev/null 2>&1; then
    echo "tests/docker/run.sh: image $SHOAL_IMAGE not found; build it with scripts/docker-image" >&2
    exit 1
fi
export SHOAL_E2E_PREFIX="${SHOAL_E2E_PREFIX:-shoale2e$(date +%s)$$x}"

cleanup() {
    local project
    for project in $({
        docker ps -a --format '{{.Label "com.docker.compose.project"}}'
        docker volume ls --format '{{.Label "com.docker.compose.project"}}'
        docker network ls --format '{{.Label "com.docker.compose.project"}}'
    } | sort -u); do
        case "$project" in
            "$SHOAL_E2E_PREFIX"*)
                "${compose[@]}" -f "$root/docker-compose.yml" -p "$project" down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
                ;;
        esac
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

args=("$@")
if [ ${#args[@]} -eq 0 ] || [[ "${args[0]}" == -* ]]; then
    args=("$here" "${args[@]}")
fi
"$root/tests/python/run.sh" -p no:cacheprovider "${args[@]}"
