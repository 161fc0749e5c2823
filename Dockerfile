# syntax=docker/dockerfile:1
# Multi-stage build: a cached dependency layer, a release build, and a minimal
# non-root runtime image holding only the binary (plus the base image's CA
# certificates and C runtime).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Dependencies first: this layer is rebuilt only when the manifests or the
# protos change, not on every source edit.
COPY Cargo.toml Cargo.lock build.rs rustfmt.toml ./
COPY proto ./proto
# build.rs's own modules (the HTTP routes and the OpenAPI document from the
# proto), and the edge's bounds it writes into that document.
COPY build ./build
COPY src/convert/limits.rs ./src/convert/limits.rs
# The workspace names the benchmark crate; its manifest is enough (it is not built).
COPY bench/Cargo.toml ./bench/
RUN mkdir -p src bench/src \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > bench/src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

COPY src ./src
# Newer mtimes than the placeholder build, so cargo rebuilds the crate itself.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/mtr-sso /usr/local/bin/mtr-sso
USER 65532:65532
EXPOSE 50051
ENTRYPOINT ["/usr/local/bin/mtr-sso"]
