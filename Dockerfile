# shoal image for machines with registry access (multi-stage: build, then a slim runtime).
#
#   docker build -t shoal:local .
#
# Without registry access use scripts/docker-image instead (docs/docker.md): it makes the
# same image from binaries built on the host. Both images share one layout: binaries in
# /usr/local/bin, working directory /qdrant with config/config.yaml, storage/ and snapshots/.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin shoal --bin shoal-probe

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/shoal /src/target/release/shoal-probe /usr/local/bin/
WORKDIR /qdrant
COPY config/config.yaml config/config.yaml
RUN mkdir -p storage snapshots
EXPOSE 6333 6334 6335
HEALTHCHECK --interval=5s --timeout=4s --start-period=10s --retries=6 CMD ["/usr/local/bin/shoal-probe"]
ENTRYPOINT ["/usr/local/bin/shoal"]
