# The operator image, for a container engine. Build: docker build -t ghcr.io/flotilla-dev/flotilla:0.1.0 .
# (scripts/image.sh builds an equivalent OCI image without an engine: see README, "The image".)
#
# Build arguments, both images overridable (e.g. a mirror, or a digest-pinned reference):
#   BUILD_IMAGE    the Rust toolchain the binary is built with   (default rust:1.95-bookworm)
#   RUNTIME_IMAGE  the base the binary runs on; it must provide the glibc the build image links
#                  against, libgcc_s, CA certificates, and the user 65532   (default
#                  gcr.io/distroless/cc-debian12:nonroot)
#   docker build --build-arg BUILD_IMAGE=rust:1.95-bookworm \
#     --build-arg RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot -t flotilla:dev .
ARG BUILD_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src src
RUN cargo build --release --locked --bin flotilla

FROM ${RUNTIME_IMAGE}
COPY --from=build /src/target/release/flotilla /usr/local/bin/flotilla
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/flotilla"]
CMD ["run"]
