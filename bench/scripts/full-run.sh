#!/usr/bin/env bash
# The one command behind README's Results: builds zcserve and zcbench
# (release), builds the Go peer, and runs zcbench over every zcserve backend
# and every peer server installed here, each started by zcbench itself
# (--peer-cmd), pinned to the server CPU, on one fixture: first the warm
# matrix, then the cold-cache scenario (a working set evicted before every
# run, the servers' disk reads throttled; cold.md beside report.md).
#
#   bench/scripts/full-run.sh [extra zcbench flags for both runs...]
#
# Settings (environment):
#   ROUNDS=5 DURATION=5 SIZES=4KiB,64KiB,1MiB,16MiB,256MiB CONNS=1,16,64
#   CLIENT_READ=8KiB,64KiB,256KiB,trunc (zcbench --client-read: how the load
#   generator reads bodies, each mode a dimension of the matrix, so the warm
#   run takes four times as long as with one; trunc discards them with
#   recv(MSG_TRUNC), the sender's cost alone)
#   IDLE_CONNS=1000 SERVER_CPUS=0 CLIENT_CPUS=1
#   OUT=results (relative to the repository)
#   FIXTURE_DIR=$CARGO_TARGET_DIR/zcbench-fixture (kept out of results/)
#   PEERS_DIR=<repo>/../shared/peers (nginx.sh, lighttpd.sh, gofs.go)
#   BACKENDS= (zcserve backends; unset: zcbench's default, all of them)
#   COLD=1 (0: skip the cold scenario) COLD_FILES=20000 COLD_SIZE=1MiB
#   COLD_CONNS=16 COLD_ROUNDS=3 COLD_DURATION=10
#   COLD_CLIENT_READ=256KiB (the cold scenario takes one client mode)
#   COLD_RATE= (cold MB/s to cap the cold connections at, so that servers
#   compare at equal cold work; empty: a closed loop)
#   DISK_IOPS=200 (read IOPS of the servers' cgroup; needs root; empty: the
#   raw disk, which the report then says)
#
# The cold run's peers: nginx-on, nginx-aio (sendfile + aio threads),
# lighttpd and go, each when installed.
#
# Peers, each included only when installed (the rest are listed as skipped):
#   nginx-on, nginx-off   apt-get install nginx-light
#   lighttpd              apt-get install lighttpd
#   static-web-server     cargo install static-web-server --locked
#   go (http.FileServer)  apt-get install golang-go
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
peers=${PEERS_DIR:-$repo/../shared/peers}
[ -d "$peers" ] && peers=$(cd "$peers" && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
rounds=${ROUNDS:-5}
duration=${DURATION:-5}
sizes=${SIZES:-4KiB,64KiB,1MiB,16MiB,256MiB}
conns=${CONNS:-1,16,64}
client_read=${CLIENT_READ:-8KiB,64KiB,256KiB,trunc}
cold_client_read=${COLD_CLIENT_READ:-256KiB}
idle=${IDLE_CONNS:-1000}
server_cpus=${SERVER_CPUS:-0}
client_cpus=${CLIENT_CPUS:-1}
out=${OUT:-results}
fixture=${FIXTURE_DIR:-$target/zcbench-fixture}

cargo build --release -p zcserve -p zcserve-bench

# One sh word, single-quoted, for a path inside a --peer-cmd.
q() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

args=()
included=()
skipped=()
cold_args=()
if command -v nginx >/dev/null 2>&1 && [ -f "$peers/nginx.sh" ]; then
  args+=(--peer-cmd "nginx-on=exec bash $(q "$peers/nginx.sh") {root} {port} on")
  args+=(--peer-cmd "nginx-off=exec bash $(q "$peers/nginx.sh") {root} {port} off")
  cold_args+=(--peer-cmd "nginx-on=exec bash $(q "$peers/nginx.sh") {root} {port} on")
  cold_args+=(--peer-cmd "nginx-aio=exec bash $(q "$peers/nginx.sh") {root} {port} aio")
  included+=(nginx-on nginx-off nginx-aio)
else
  skipped+=("nginx-on nginx-off (no nginx: apt-get install nginx-light)")
fi
if command -v lighttpd >/dev/null 2>&1 && [ -f "$peers/lighttpd.sh" ]; then
  args+=(--peer-cmd "lighttpd=exec bash $(q "$peers/lighttpd.sh") {root} {port}")
  cold_args+=(--peer-cmd "lighttpd=exec bash $(q "$peers/lighttpd.sh") {root} {port}")
  included+=(lighttpd)
else
  skipped+=("lighttpd (no lighttpd: apt-get install lighttpd)")
fi
sws=$(command -v static-web-server 2>/dev/null || true)
if [ -z "$sws" ] && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/static-web-server" ]; then
  sws=${CARGO_HOME:-$HOME/.cargo}/bin/static-web-server
fi
if [ -n "$sws" ]; then
  args+=(--peer-cmd "static-web-server=exec $(q "$sws") --host 127.0.0.1 --port {port} --root {root} --threads-multiplier 1 --compression false --log-level error")
  included+=(static-web-server)
else
  skipped+=("static-web-server (not installed: cargo install static-web-server --locked)")
fi
if command -v go >/dev/null 2>&1 && [ -f "$peers/gofs.go" ]; then
  mkdir -p "$target"
  (cd "$peers" && go build -o "$target/gofs" gofs.go)
  args+=(--peer-cmd "go=exec env GOMAXPROCS={threads} $(q "$target/gofs") -root {root} -port {port}")
  cold_args+=(--peer-cmd "go=exec env GOMAXPROCS={threads} $(q "$target/gofs") -root {root} -port {port}")
  included+=(go)
else
  skipped+=("go (no Go toolchain: apt-get install golang-go)")
fi
if [ -n "${BACKENDS+x}" ]; then
  args+=(--backends "$BACKENDS")
  cold_args+=(--backends "$BACKENDS")
fi
disk_iops=${DISK_IOPS-200}
if [ -n "$disk_iops" ]; then
  cold_args+=(--disk-iops "$disk_iops")
fi
if [ -n "${COLD_RATE:-}" ]; then
  cold_args+=(--cold-rate "$COLD_RATE")
fi

echo "peers included: ${included[*]:-none}"
for s in "${skipped[@]}"; do echo "peer skipped: $s"; done
echo "rounds=$rounds duration=${duration}s sizes=$sizes conns=$conns client-read=$client_read idle-conns=$idle -> $out/"

status=0
"$target/release/zcbench" \
  --rounds "$rounds" --duration "$duration" --sizes "$sizes" --conns "$conns" \
  --client-read "$client_read" --idle-conns "$idle" --server-cpus "$server_cpus" --client-cpus "$client_cpus" \
  --fixture-dir "$fixture" --out "$out" \
  ${args[@]+"${args[@]}"} "$@" || status=$?

if [ "${COLD:-1}" != 0 ]; then
  echo "cold: ${COLD_FILES:-20000} x ${COLD_SIZE:-1MiB}, ${COLD_CONNS:-16} cold connections, disk-iops=${disk_iops:-none (raw disk)} -> $out/cold.md"
  "$target/release/zcbench" --scenario cold \
    --rounds "${COLD_ROUNDS:-3}" --duration "${COLD_DURATION:-10}" \
    --cold-files "${COLD_FILES:-20000}" --cold-size "${COLD_SIZE:-1MiB}" \
    --cold-conns "${COLD_CONNS:-16}" --client-read "$cold_client_read" \
    --server-cpus "$server_cpus" --client-cpus "$client_cpus" \
    --fixture-dir "$fixture" --out "$out" \
    ${cold_args[@]+"${cold_args[@]}"} "$@" || status=$?
fi
exit "$status"
