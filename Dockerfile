# mpgate: multi-stage build, slim non-root runtime.
#   docker build -t mpgate .
#   docker run -p 8080:8080 -v mpgate-data:/data \
#     -e MPGATE_TOKEN=... -e MPGATE_APP_ID=wx... -e MPGATE_ENCODING_AES_KEY=... \
#     -e MPGATE_PUBLIC_URL=https://mp.example.com -e MPGATE_ADMIN_TOKEN=... mpgate
# Settings (all optional; see README): MPGATE_TOKEN, MPGATE_APP_ID, MPGATE_ENCODING_AES_KEY,
# MPGATE_ENCODING_AES_KEY_PREVIOUS, MPGATE_LISTEN, MPGATE_DATA_DIR, MPGATE_KEYWORDS,
# MPGATE_PUBLIC_URL, MPGATE_ADMIN_TOKEN, MPGATE_REPLAY_WINDOW_SECS, MPGATE_MAX_BODY_BYTES,
# MPGATE_LOG_FORMAT, MPGATE_CACHE_MB. Mount your own keywords.toml and templates/ over /app to
# change the rules without rebuilding (they hot-reload).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml names the [[bench]] targets, so their files must exist for any build.
COPY benches ./benches
# The binary embeds the shipped rules and templates (include_str!) as its built-in defaults.
# scripts/check-docker-context.sh (CI) builds from exactly these COPY lines.
COPY keywords.toml ./
COPY templates ./templates
RUN cargo build --release --locked --bin mpgate

FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 mpgate \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin mpgate \
 && mkdir -p /data \
 && chown 10001:10001 /data
WORKDIR /app
COPY --from=build /src/target/release/mpgate /usr/local/bin/mpgate
COPY keywords.toml ./
COPY templates ./templates
ENV MPGATE_LISTEN=0.0.0.0:8080 \
    MPGATE_DATA_DIR=/data \
    MPGATE_KEYWORDS=/app/keywords.toml \
    MPGATE_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 CMD ["mpgate", "healthcheck"]
ENTRYPOINT ["mpgate"]
CMD ["serve"]
