# mall in a container: built in a Rust image, run from a slim one as a user without privileges.
#   docker build -t mall .
#   docker run -p 8080:8080 -e MALL_ADMIN_TOKEN=change-me mall            # the embedded store
#   docker compose up                                                      # with PostgreSQL
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mall \
    && strip target/release/mall

FROM debian:bookworm-slim
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /var/lib/mall --uid 10001 mall
COPY --from=build /src/target/release/mall /usr/local/bin/mall
USER mall
WORKDIR /var/lib/mall
ENV MALL_DATA_DIR=/var/lib/mall/data MALL_BIND=0.0.0.0:8080
VOLUME ["/var/lib/mall"]
EXPOSE 8080
ENTRYPOINT ["mall"]
CMD ["serve"]
