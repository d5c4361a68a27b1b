#!/usr/bin/env bash
# Where the CPU goes in the cold scenario, per server variant: one zcbench
# cold round per variant under `perf sched record -a`, summarised per CPU
# and task by sched-bursts.py (run bursts of the event loop, and how long it
# waited between being woken and running).
#
#   bench/scripts/cold-sched.sh OUT NAME='zcserve flags' [NAME='flags' ...]
#   e.g. bench/scripts/cold-sched.sh /tmp/sched idle='--disk-priority idle' \
#          normal='--disk-priority normal'
#
# Settings (environment): ZCSERVE_ARGS (default: --backend sendfile),
# FIXTURE_DIR (default /var/tmp/zccold), DISK_IOPS=200, DURATION=10,
# COLD_FILES=20000. Needs root (perf, the blkio cgroup), perf, and release
# builds of zcserve and zcbench in target/release.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: cold-sched.sh OUT NAME=FLAGS...}
shift
[ $# -gt 0 ] || { echo "cold-sched.sh: give at least one NAME='zcserve flags'" >&2; exit 2; }
mkdir -p "$out"
duration=${DURATION:-10}
base="target/release/zcserve --root {root} --listen 127.0.0.1:{port} --threads 1 --access-log off ${ZCSERVE_ARGS:---backend sendfile}"
for variant in "$@"; do
  name=${variant%%=*}
  flags=${variant#*=}
  # Long enough for the fixture check, the eviction and the run.
  perf sched record -a -o "$out/$name.data" -- sleep $((duration + 22)) >/dev/null 2>&1 &
  rec=$!
  sleep 1
  target/release/zcbench --scenario cold --disk-iops "${DISK_IOPS:-200}" --duration "$duration" \
    --rounds 1 --cold-files "${COLD_FILES:-20000}" --backends '' \
    --fixture-dir "${FIXTURE_DIR:-/var/tmp/zccold}" --out "$out/$name" \
    --peer-cmd "$name=exec $base $flags" 2>&1 | grep "cold round" || true
  wait "$rec"
  perf sched timehist -i "$out/$name.data" >"$out/$name.timehist" 2>/dev/null
  rm -f "$out/$name.data"
  python3 bench/scripts/sched-bursts.py "$out/$name.timehist" 40 | grep -E "CPU|---|zcserve" | tee "$out/$name.md"
done
