#!/usr/bin/env bash
# Soak test: locust's WebODM-like users (bench/locustfile.py) against three clusterodm replicas
# on one throwaway PostgreSQL, behind nginx round-robin, with simulator nodes doing the work.
# Passes (exit 0) with zero failed requests and every replica's RSS flat (last minute within
# 10 % of the first minute). Needs the bench extra (locust), nginx-light and postgresql.
#
#   bench/soak_locust.sh                          # 200 users, 10 minutes (the issue's soak)
#   USERS=50 DURATION=2m bench/soak_locust.sh     # a short one
#   bench/soak_locust.sh --upload-hash            # other flags go to bench/soak_replicas.py
# The work folder (logs, the nodes' files) is removed after a pass unless KEEP=1, kept after a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -c 'import locust' 2>/dev/null \
    || { echo "soak: locust is missing: $PY -m pip install -e '.[bench]'" >&2; exit 1; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] \
    || { echo "soak: nginx is missing: apt-get install nginx-light" >&2; exit 1; }
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" bench/soak_replicas.py --users "${USERS:-200}" --duration "${DURATION:-10m}" \
    --spawn-rate "${SPAWN_RATE:-10}" "$@"
