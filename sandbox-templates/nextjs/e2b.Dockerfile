# E2B sandbox image for the nextjs template (cloud backend; the local sandbox does not use it).
# Build it from this directory as the README's "Sandboxes on E2B" says (see e2b.toml).
FROM node:20-slim

# curl is what compile_page.sh uses to wait for the dev server.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*

COPY compile_page.sh /compile_page.sh
RUN chmod +x /compile_page.sh

WORKDIR /home/user
# Dependencies first so that source edits keep the npm ci layer cached.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY next.config.ts postcss.config.mjs tsconfig.json .gitignore ./
COPY src ./src

ENV NEXT_TELEMETRY_DISABLED=1
