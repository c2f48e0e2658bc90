# sse-fanout image: a build stage compiles TypeScript, the runtime stage has only
# production dependencies and dist/. Build: docker build -t sse-fanout .
# Run: docker run --init -p 3000:3000 -e REDIS_URL=redis://host:6379 sse-fanout

FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json app.ts server.ts ./
COPY src ./src
COPY plugins ./plugins
COPY routes ./routes
RUN npm run build

FROM node:24-slim AS runtime
ENV NODE_ENV=production
# The service listens on loopback by default; in a container it must take outside connections.
ENV HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The demo page (DEMO_PAGE) is not compiled: routes/demo.ts reads it from the project root.
COPY public ./public
# The image's unprivileged "node" user (uid 1000); the app writes nothing to disk.
USER node
EXPOSE 3000
# No curl in node:24-slim: Node's own fetch. /health answers 200 also when degraded
# (Redis down): the instance still serves its local clients, so it stays in rotation.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form: node is the process that gets SIGTERM (no npm or shell in between), and
# close-with-grace ends the streams. Use --init (compose: init: true) to reap zombies.
STOPSIGNAL SIGTERM
CMD ["node", "dist/server.js"]
