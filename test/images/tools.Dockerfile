# Test tools image: real servers and clients the end-to-end tests run as targets and peers.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 redis-server redis-tools curl nodejs procps iproute2 netcat-openbsd \
 && rm -rf /var/lib/apt/lists/*
