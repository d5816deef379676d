# Postern container image: the gateway and the operator.
#   docker build -t postern .
# Base images are build arguments so a mirror or a locally made base can be used.
ARG RUST_IMAGE=rust:1.95-bookworm
# A distroless cc image works as well (--build-arg RUNTIME_IMAGE=...): the binaries need
# only glibc.
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p postern-gateway -p postern-operator \
 && install -D -m 0755 target/release/postern-gateway /out/postern-gateway \
 && install -D -m 0755 target/release/postern-operator /out/postern-operator

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/postern-gateway /out/postern-operator /usr/local/bin/
# Non-root. The gateway binds unprivileged ports (2525/2587/2465, metrics 9098); the
# operator's Service maps 25/587/465 to them.
USER 65532:65532
EXPOSE 2525 2587 2465 9098
# The spool must be a writable volume; the root filesystem can stay read-only.
VOLUME ["/var/spool/postern"]
ENTRYPOINT ["/usr/local/bin/postern-gateway"]
CMD ["run", "--config", "/etc/postern/config/gateway.toml"]
