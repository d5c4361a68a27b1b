#!/bin/bash
cd /work/main
Z='--root {root} --listen 127.0.0.1:{port} --threads {threads} --access-log off --backend uring'
for sc in 4KiB:64 1MiB:16 256MiB:1; do
  S=${sc%:*}; C=${sc#*:}
  target/release/zcbench --backends '' --sizes $S --conns $C --client-read trunc --rounds 7 --duration 3 --idle-conns 0 --fixture-dir /var/tmp/zcfix --out /work/runs/warm-uring-gate/$S-x$C --peer-cmd "uring=exec target/release/zcserve $Z" --peer-cmd "uring-dt0=exec target/release/zcserve $Z --disk-threads 0"
done
echo WARM DONE
