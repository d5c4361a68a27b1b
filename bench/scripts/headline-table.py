#!/usr/bin/env python3
"""README's headline table from zcbench runs of the three headline scenarios.

    bench/scripts/headline-table.py CLIENT DIR_4KiB DIR_1MiB DIR_256MiB

prints one Markdown table for the client read mode CLIENT (8KiB, trunc, ...):
for every target, the median over rounds of req/s at 4 KiB x 64 and MB/s at
1 MiB x 16 and 256 MiB x 1, each with the server's and the client's CPU s/GB
(zcbench's results.json in each DIR). Invalid rounds are left out.
"""

import json
import statistics
import sys
from collections import defaultdict

NAMES = {
    "nginx-on": "nginx `sendfile on`",
    "nginx-off": "nginx `sendfile off`",
    "lighttpd": "lighttpd 1.4",
    "go": "Go `http.FileServer`",
    "static-web-server": "static-web-server",
}


def name(target):
    if target.startswith("zcserve-"):
        return f"zcserve `{target[len('zcserve-'):]}`"
    return NAMES.get(target, target)


def medians(path, client):
    with open(path) as f:
        rows = json.load(f)["results"]
    by = defaultdict(lambda: defaultdict(list))
    order = []
    for r in rows:
        if r.get("client_read") != client or not r.get("valid", True):
            continue
        if r["target"] not in order:
            order.append(r["target"])
        for k in ("req_per_s", "mb_per_s", "cpu_s_per_gb", "client_cpu_s_per_gb"):
            if r.get(k) is not None:
                by[r["target"]][k].append(r[k])
    return order, {t: {k: statistics.median(v) for k, v in m.items()} for t, m in by.items()}


def main(argv):
    if len(argv) != 4:
        sys.exit(__doc__)
    client, dirs = argv[0], argv[1:]
    runs = [medians(f"{d}/results.json", client) for d in dirs]
    order = []
    for o, _ in runs:
        order += [t for t in o if t not in order]
    print(
        "| server | 4 KiB × 64, req/s | CPU s/GB | client | 1 MiB × 16, MB/s | CPU s/GB | client "
        "| 256 MiB × 1, MB/s | CPU s/GB | client |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for t in order:
        cells = []
        for i, (_, m) in enumerate(runs):
            v = m.get(t)
            if not v:
                cells += ["–", "–", "–"]
                continue
            main_v = f"{v['req_per_s'] / 1000:.1f} k" if i == 0 else f"{v['mb_per_s']:,.0f}"
            cells += [
                main_v,
                f"{v.get('cpu_s_per_gb', float('nan')):.2f}",
                f"{v.get('client_cpu_s_per_gb', float('nan')):.2f}",
            ]
        print(f"| {name(t)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
