# syntax=docker/dockerfile:1
# worker-runtime image: `docker build -t worker-runtime:0.1.0 .` (see docs/kubernetes.md).
# One image for both roles: `serve` (a runtime) and `backend`.

# Build stage: every dependency, compile src/ to dist/ and bundle the web console into dist/web.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are copied; the build runs below.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY gen ./gen
COPY src ./src
COPY web ./web
RUN npm run build && rm -f dist/.tsbuildinfo

# Runtime stage: production dependencies, dist/ and gen/ (dist/ imports ../gen/*.js), nothing else.
FROM node:24-bookworm-slim AS runtime
# tini as PID 1: it forwards SIGTERM to node, which drains, and reaps the orphaned
# grandchildren the shell tool's commands can leave (node does not reap them).
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY gen ./gen
COPY --from=build /app/dist ./dist
# The file store's directory when no volume is mounted over it.
RUN mkdir /data && chown 1000:1000 /data
# The base image's unprivileged "node" user, by number so Kubernetes can check runAsNonRoot.
USER 1000:1000
# 7070 runtime gRPC (serve), 7080 and 8080 the Backend (gRPC; HTTP/1.1 and the console), 9464 Prometheus (--metrics-port).
EXPOSE 7070 7080 8080 9464
ENTRYPOINT ["/usr/bin/tini", "--", "node", "dist/cli/main.js"]
CMD ["serve", "--host", "0.0.0.0", "--data-dir", "/data"]
