# A Consenso image: one static binary and the built page, nothing else (FROM scratch).
#
#   ./dev page                       # the page goes in dist/ (wasm, built outside the image)
#   docker build -t consenso .
#   docker compose -f deploy/compose.yaml up
#
# The same binary runs as server, proxy or CLI client: the command decides.

FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# musl: a static executable that needs no libc in the image.
RUN cargo build --release --locked --bin consenso --target x86_64-unknown-linux-musl

FROM scratch
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/consenso /consenso
COPY dist/ /dist/
# Servers listen on 7001, proxies on 8080 (the page and the client endpoint).
EXPOSE 7001 8080
ENTRYPOINT ["/consenso"]
CMD ["--help"]
