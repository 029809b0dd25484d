# stoka-proxy as a container image (docs/operations.md, "Deploying").
#
#   docker build -t stoka-proxy .
#   docker run --network host \
#     -v "$PWD/config/host.yaml:/config/stoka-proxy.yaml:ro" \
#     -v "$PWD/seed:/run/secrets/stellar-seed:ro" -e STELLAR_SECRET_FILE=/run/secrets/stellar-seed \
#     -v stoka-data:/data stoka-proxy
#
# No secret is baked in: the wallet seed, client tokens and the CA key arrive at run time as
# mounted files or environment variables. .dockerignore sends only what is copied below.
# test/e2e/container.test.ts replays these steps (it reads this file) without a Docker engine.

# The Node major the test suite runs on.
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
# better-sqlite3 is a native addon: it is compiled here when no prebuilt binary fits, and only
# this stage has a compiler.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build
# Production dependencies only; the addon compiled above stays as it is.
RUN npm prune --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
# tini is PID 1: it passes SIGTERM/SIGINT on to node (whose handlers close the listeners and
# exit 0) and reaps orphans. The proxy runs signer commands (wallet.payment_command,
# sign_command) through `sh -c` and kills their process group on timeout; anything they leave
# behind is re-parented to PID 1, and node, which only waits for its own children, would leave
# them as zombies. ca-certificates gives the system bundle a sidecar's trust-bundle step joins
# with the proxy's CA.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 stoka \
 && useradd --system --uid 10001 --gid stoka --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin stoka \
 && mkdir -p /data /config \
 && chown stoka:stoka /data \
 && chmod 0700 /data
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The data directory is the volume (env wins over the file's data_dir); the config file is
# mounted at /config (a ConfigMap, or -v); every other command (check-config, ca, ledger
# verify, spend, budgets …) reads the same file: `docker run … stoka-proxy check-config`.
ENV NODE_ENV=production \
    STOKA_PROXY_CONFIG=/config/stoka-proxy.yaml \
    STOKA_PROXY_DATA_DIR=/data
# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
VOLUME ["/data"]
# 8402: the proxy (HTTP_PROXY / HTTPS_PROXY, gateway). 9402: /metrics, /healthz, /readyz.
EXPOSE 8402 9402
# No curl in the slim image: node asks /healthz on the admin port (STOKA_PROXY_ADMIN_LISTEN's
# port when set, else 9402) over loopback, so admin_listen must be 127.0.0.1 or 0.0.0.0.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "const p=/:(\\d+)$/.exec(process.env.STOKA_PROXY_ADMIN_LISTEN||'')?.[1]||'9402';require('node:http').get({host:'127.0.0.1',port:p,path:'/healthz',timeout:4000},(r)=>process.exit(r.statusCode===200?0:1)).on('timeout',()=>process.exit(1)).on('error',()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/cli/main.js"]
CMD ["start"]
