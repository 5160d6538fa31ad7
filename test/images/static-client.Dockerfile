# A container with no libc and no dynamic loader at all: Debian's statically linked busybox on an
# empty base. The mirrord layer cannot load into it; only namespace-level capture reaches it.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE} AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static && rm -rf /var/lib/apt/lists/*
FROM scratch
COPY --from=build /bin/busybox /bin/busybox
ENTRYPOINT ["/bin/busybox"]
