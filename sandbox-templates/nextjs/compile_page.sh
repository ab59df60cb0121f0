#!/usr/bin/env bash
# Start command of the E2B template: run the Next dev server and return only once it serves
# the page with 200, so that the sandbox snapshot already holds a warm, compiled server.
set -u
cd /home/user

NEXT_TELEMETRY_DISABLED=1 npx next dev --turbopack -p 3000 >/tmp/next-dev.log 2>&1 &
server=$!

until [ "$(curl -s -o /dev/null -w '%{http_code}' http://localhost:3000/)" = "200" ]; do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "next dev exited; see /tmp/next-dev.log" >&2
    exit 1
  fi
  sleep 0.5
done
echo "next dev is ready on port 3000"

# Keep the start command alive as long as the server runs.
wait "$server"
