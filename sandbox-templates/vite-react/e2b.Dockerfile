# E2B sandbox image for the vite-react template (CODEFLUX_SANDBOX=e2b; the local sandbox does
# not use it). Build it from this directory as the README's "Sandboxes on E2B" says.
FROM node:22-slim

# curl is what start_vite.sh uses to wait for the dev server.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*

COPY start_vite.sh /start_vite.sh
RUN chmod +x /start_vite.sh

WORKDIR /home/user
# Dependencies first so that source edits keep the npm ci layer cached.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY index.html vite.config.ts tsconfig.json tsconfig.app.json tsconfig.node.json .gitignore ./
COPY public ./public
COPY src ./src

# CodeFlux creates sandboxes with maskRequestHost "localhost:${PORT}": the dev server sees
# localhost as the Host, which Vite allows.
