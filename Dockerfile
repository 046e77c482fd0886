# The operator image. Build: docker build -t ghcr.io/flotilla-dev/flotilla:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src src
RUN cargo build --release --locked --bin flotilla

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/flotilla /usr/local/bin/flotilla
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/flotilla"]
CMD ["run"]
