#!/usr/bin/env bash
# Interim comparison of zcserve (each backend) with nginx (sendfile on/off)
# using wrk, until zcbench exists. Server pinned to CPU 0 with --threads 1,
# wrk to CPU 1; rounds interleaved (round 1 of everyone, then round 2...);
# prints every round and the median per server and scenario.
#
#   bench/scripts/wrk-compare.sh [ROUNDS] [SECONDS]
#
# Needs wrk and nginx (apt-get install wrk nginx-light) and a release build
# (cargo build --release -p zcserve).
set -euo pipefail
rounds=${1:-5}; secs=${2:-5}
here=$(cd "$(dirname "$0")/../.." && pwd)
zc=$here/target/release/zcserve
peers=${PEERS:-$here/../shared/peers}
root=$(mktemp -d); out=$(mktemp)
trap 'rm -rf "$root" "$out"; [ -z "$pid" ] || kill "$pid" 2>/dev/null || true' EXIT
head -c 4096 /dev/urandom > "$root/4k.bin"
head -c 1048576 /dev/urandom > "$root/1m.bin"
head -c 268435456 /dev/urandom > "$root/256m.bin"
cat "$root"/* > /dev/null

servers="sendfile splice mmap copy nginx-on nginx-off"
pid=
start() { # server port; sets $pid
  case $1 in
    nginx-on) taskset -c 0 "$peers/nginx.sh" "$root" "$2" on >/dev/null 2>&1 & ;;
    nginx-off) taskset -c 0 "$peers/nginx.sh" "$root" "$2" off >/dev/null 2>&1 & ;;
    *) taskset -c 0 "$zc" --root "$root" --listen "127.0.0.1:$2" --threads 1 --access-log off \
         --backend "$1" >/dev/null 2>&1 & ;;
  esac
  pid=$!
  for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$2/4k.bin" && return; sleep 0.1; done
  echo "server $1 did not start" >&2; exit 1
}
measure() { # server port round
  local r; r=$(taskset -c 1 wrk -t1 -c64 -d"${secs}s" "http://127.0.0.1:$2/4k.bin" | awk '/Requests\/sec/{print $2}')
  echo "$1 4KiBx64 req/s $r" | tee -a "$out"
  r=$(taskset -c 1 wrk -t1 -c16 -d"${secs}s" "http://127.0.0.1:$2/1m.bin" | awk '/Transfer\/sec/{print $2}')
  echo "$1 1MiBx16 transfer/s $r" | tee -a "$out"
  r=$(taskset -c 1 wrk -t1 -c1 -d"${secs}s" "http://127.0.0.1:$2/256m.bin" | awk '/Transfer\/sec/{print $2}')
  echo "$1 256MiBx1 transfer/s $r" | tee -a "$out"
}
port=8100
for round in $(seq "$rounds"); do
  for s in $servers; do
    port=$((port + 1))
    start "$s" "$port"
    echo "# round $round $s"
    measure "$s" "$port" "$round"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  done
done
echo "# medians over $rounds rounds of ${secs}s (server CPU 0, wrk CPU 1)"
python3 - "$out" <<'PY'
import sys, statistics, collections
def num(v):
    m = {'KB': 1e-6, 'MB': 1e-3, 'GB': 1.0}
    for k, f in m.items():
        if v.endswith(k): return float(v[:-2]) * f
    return float(v)
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    s, scen, unit, v = line.split()
    d[(scen, s)].append(num(v))
for (scen, s), vs in sorted(d.items()):
    unit = 'req/s' if scen.startswith('4KiB') else 'GB/s'
    print(f"{scen:10} {s:10} median {statistics.median(vs):>12.2f} {unit}  (min {min(vs):.2f}, max {max(vs):.2f})")
PY
