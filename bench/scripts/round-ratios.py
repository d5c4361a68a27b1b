#!/usr/bin/env python3
"""Per-round ratios between servers of one zcbench run.

zcbench interleaves its rounds (round 1 of every server, then round 2, ...),
so the ratio of two servers *within* a round cancels most of what drifts on a
shared machine between rounds. This prints, for every scenario (client mode,
size, connections), the median of those per-round ratios and their range.

    bench/scripts/round-ratios.py RESULTS.json A B [A2 B2 ...] [--metric M]

A and B are target names as zcbench writes them (zcserve-sendfile,
nginx-on, a --peer-cmd NAME...). A may also be `best:PREFIX`, the best
target whose name starts with PREFIX in each round (e.g. best:zcserve-;
best:!zcserve- is the best of the others),
and likewise B. M is a field of the results (mb_per_s, the default;
req_per_s; cpu_s_per_gb, where lower is better, so best: picks the
lowest). Rounds where either side is missing or invalid are left out.

It reads the cold scenario's cold.json too (one cell, `cold`; metrics
hot_p99_us, hot_p50_us, hot_req_per_s, cold_mb_per_s...; the hot
latencies are lower-is-better like CPU).

--max-steal F leaves out every round in which either side's server or
client CPUs lost more than F (a fraction, e.g. 0.02) of their time to the
hypervisor (zcbench records server_steal and client_steal per run; runs
recorded before it are kept).
"""

import json
import statistics
import sys
from collections import defaultdict


def main(argv):
    metric = "mb_per_s"
    max_steal = None
    if "--max-steal" in argv:
        i = argv.index("--max-steal")
        max_steal = float(argv[i + 1])
        del argv[i : i + 2]
    if "--metric" in argv:
        i = argv.index("--metric")
        metric = argv[i + 1]
        del argv[i : i + 2]
    if len(argv) < 3 or len(argv) % 2 == 0:
        sys.exit(__doc__)
    path, pairs = argv[0], list(zip(argv[1::2], argv[2::2]))
    with open(path) as f:
        results = json.load(f)["results"]
    lower_better = metric.startswith(("cpu", "hot_p", "hot_max"))
    # (mode, size, conns) -> round -> target -> value
    cells = defaultdict(lambda: defaultdict(dict))
    for r in results:
        if not r.get("valid", True) or r.get(metric) is None:
            continue
        steal = max(r.get("server_steal") or 0.0, r.get("client_steal") or 0.0)
        if max_steal is not None and steal > max_steal:
            continue
        if "size" in r:
            key = (r.get("client_read", "-"), r["size"], r["conns"])
        else:
            key = ("cold", "-", "-")
        cells[key][r["round"]][r["target"]] = r[metric]

    def pick(spec, row):
        if spec.startswith("best:"):
            pre = spec[5:]
            if pre.startswith("!"):
                cands = {t: v for t, v in row.items() if not t.startswith(pre[1:])}
            else:
                cands = {t: v for t, v in row.items() if t.startswith(pre)}
            if not cands:
                return None, None
            best = (min if lower_better else max)(cands, key=cands.get)
            return best, cands[best]
        return spec, row.get(spec)

    kept = "" if max_steal is None else f"; rounds with steal above {max_steal:.1%} left out"
    print(f"metric: {metric} (ratio A/B per round; median [min-max] over rounds{kept})")
    print("| client | size | conns | A | B | median | range | rounds | A's winners |")
    print("|---|--:|--:|---|---|--:|---|--:|---|")
    for key in sorted(cells, key=lambda k: (str(k[0]), k[1], k[2])):
        rounds = cells[key]
        for a, b in pairs:
            ratios, winners = [], defaultdict(int)
            for rnd in sorted(rounds):
                ta, va = pick(a, rounds[rnd])
                tb, vb = pick(b, rounds[rnd])
                if va is None or vb is None or vb == 0:
                    continue
                ratios.append(va / vb)
                winners[ta] += 1
            if not ratios:
                continue
            mode, size, conns = key
            who = ", ".join(f"{t} {n}" for t, n in sorted(winners.items()))
            print(
                f"| {mode} | {size} | {conns} | {a} | {b} | "
                f"{statistics.median(ratios):.3f} | {min(ratios):.3f}-{max(ratios):.3f} | "
                f"{len(ratios)} | {who} |"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
