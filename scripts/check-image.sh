#!/usr/bin/env bash
# Build the service image and check it from outside, the way an operator would meet it:
# migrations, /readyz, /v1/choose, /metrics, a non-root user and Docker's own health check.
#
#   bash scripts/check-image.sh
#
# No image registry is reachable here, so the base is made locally (build-base-image.sh)
# and passed as the Dockerfile's BASE_IMAGE; building and running use --network host, so
# nothing leaves loopback but the package index. The container talks to the local
# PostgreSQL (127.0.0.1:5432) in a database of its own, and the service runs in production
# shape: production mode, gunicorn with two workers, Prometheus multiprocess mode.
# tests/deploy/test_image.py runs this script as part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DOCKER="${DOCKER:-/usr/bin/docker}"
export DOCKER
PG_ADMIN="${BANDITLOOP_IMAGE_CHECK_PG:-postgresql://postgres@127.0.0.1:5432/test}"
RUN_ID="$(basename "$ROOT")-$$"
IMAGE="banditloop-check:$RUN_ID"
NAME="banditloop-check-$RUN_ID"
DB="banditloop_image_$(echo "$RUN_ID" | tr -c 'a-zA-Z0-9\n' '_')"
DB_URL="postgresql+psycopg://postgres@127.0.0.1:5432/$DB"
SIGNING="k1:$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"

step_started=$(date +%s)
step() { # print how long the previous step took, then name the next
  local now
  now=$(date +%s)
  echo "check-image: $1 (+$((now - step_started)) s)"
  step_started=$now
}
fail() {
  echo "check-image: FAILED: $*" >&2
  if "$DOCKER" inspect "$NAME" >/dev/null 2>&1; then
    echo "--- container log" >&2
    "$DOCKER" logs --tail 60 "$NAME" >&2 || true
  fi
  exit 1
}
cleanup() {
  "$DOCKER" rm -f "$NAME" >/dev/null 2>&1 || true
  # Only this run's tag goes: banditloop-check:cache keeps the layers for the next build,
  # and older builds that no tag names any more are pruned.
  "$DOCKER" rmi "$IMAGE" >/dev/null 2>&1 || true
  "$DOCKER" image prune -f --filter label=banditloop.check=1 >/dev/null 2>&1 || true
  psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
json() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }

started=$(date +%s)
bash scripts/ensure-docker.sh
step "docker engine ready"
bash scripts/build-base-image.sh banditloop-base:bookworm
step "base image ready"
"$DOCKER" build --network host --build-arg BASE_IMAGE=banditloop-base:bookworm \
  --label banditloop.check=1 -t "$IMAGE" -t banditloop-check:cache -q . >/dev/null ||
  fail "docker build"
step "image built"

export PGOPTIONS="-c client_min_messages=warning"
psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null
psql -q "$PG_ADMIN" -c "CREATE DATABASE \"$DB\"" >/dev/null
run_env=(-e BANDITLOOP_MODE=production -e "BANDITLOOP_DATABASE_URL=$DB_URL"
  -e "BANDITLOOP_SIGNING_KEYS=$SIGNING" -e "BANDITLOOP_PORT=$PORT"
  -e PROMETHEUS_MULTIPROC_DIR=/tmp/banditloop-metrics)

migrated="$("$DOCKER" run --rm --network host "${run_env[@]}" "$IMAGE" migrate)" ||
  fail "banditloop migrate"
echo "$migrated" | grep -q "^database at [0-9a-f]" || fail "migrate said: $migrated"
step "migrations applied: $migrated"

# The admin key from the CLI in a one-off container, as an operator would make one.
created="$("$DOCKER" run --rm --network host "${run_env[@]}" "$IMAGE" \
  keys create --name image-check --scopes admin)" || fail "banditloop keys create"
ADMIN_KEY="$(sed -n 's/^created key [0-9]* ([a-z,]*): \(bl_[A-Za-z0-9_-]*\)$/\1/p' <<<"$created")"
[ -n "$ADMIN_KEY" ] || fail "keys create said: $created"
step "admin key created"

"$DOCKER" run -d --name "$NAME" --network host "${run_env[@]}" "$IMAGE" \
  serve --host 127.0.0.1 --workers 2 >/dev/null || fail "docker run"
for _ in $(seq 1 120); do
  if curl -fsS "$BASE/readyz" >/dev/null 2>&1; then
    break
  fi
  [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$NAME")" = "true" ] || fail "the container exited"
  sleep 0.5
done
ready="$(curl -fsS "$BASE/readyz")" || fail "/readyz never answered 200"
[ "$(echo "$ready" | json '["migration"]')" = "$(echo "$ready" | json '["head"]')" ] ||
  fail "/readyz: $ready"
step "/readyz: $ready"

user="$("$DOCKER" exec "$NAME" id -u)"
[ "$user" != "0" ] || fail "the service runs as root"
[ "$("$DOCKER" inspect -f '{{.Config.User}}' "$IMAGE")" = "banditloop" ] || fail "USER is not banditloop"
step "runs as uid $user (banditloop)"

auth=(-H "Authorization: Bearer $ADMIN_KEY" -H "Content-Type: application/json")
curl -fsS "${auth[@]}" -d '{"key": "image-check", "name": "Image check",
  "arms": [{"content": "Ready for the new season?", "control": true},
           {"content": "Shop this week'"'"'s best sellers"}]}' \
  "$BASE/v1/experiments" >/dev/null || fail "POST /v1/experiments"
choice="$(curl -fsS "${auth[@]}" -d '{"experiment": "image-check", "unit_id": "u1", "send_id": "s1"}' \
  "$BASE/v1/choose")" || fail "POST /v1/choose"
[ "$(echo "$choice" | json '["tracked"]')" = "True" ] || fail "/v1/choose: $choice"
echo "$choice" | json '["decision_id"]' | grep -Eq '^[A-Za-z0-9_-]{20,80}$' || fail "decision id: $choice"
step "/v1/choose answered arm $(echo "$choice" | json '["arm"]["id"]')"

metrics="$(curl -fsS "$BASE/metrics")" || fail "/metrics"
for series in '^banditloop_decisions_total\{' '^banditloop_choose_latency_seconds_bucket\{' \
  '^banditloop_arm_info\{.*experiment="image-check"' \
  '^banditloop_arms\{experiment="image-check",status="live"\} 2\.0$'; do
  grep -Eq "$series" <<<"$metrics" || fail "/metrics has no $series"
done
step "/metrics: $(grep -c '^banditloop_' <<<"$metrics") banditloop samples"

for _ in $(seq 1 90); do
  health="$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$NAME")"
  [ "$health" = "healthy" ] && break
  [ "$health" = "unhealthy" ] && fail "the health check says unhealthy"
  sleep 1
done
[ "$health" = "healthy" ] || fail "the health check never passed ($health)"
step "docker health check: $health"

"$DOCKER" stop -t 20 "$NAME" >/dev/null
code="$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$NAME")"
[ "$code" = "0" ] || fail "exit code $code after SIGTERM"
step "stopped cleanly on SIGTERM"
echo "check-image: OK in $(($(date +%s) - started)) s"
