#!/usr/bin/env bash
# Start command of the E2B template: run the Vite dev server on every interface (E2B's edge
# reaches it from outside the sandbox) and return only once it serves the page, so that the
# template's snapshot already holds a warm server. CodeFlux runs it again when the server stops.
set -u
cd /home/user

node node_modules/vite/bin/vite.js --host 0.0.0.0 --port 5173 --strictPort &
server=$!

until [ "$(curl -s -o /dev/null -w '%{http_code}' http://localhost:5173/)" = "200" ]; do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "vite exited" >&2
    exit 1
  fi
  sleep 0.5
done
echo "vite is ready on port 5173"

# Keep the start command alive as long as the server runs.
wait "$server"
