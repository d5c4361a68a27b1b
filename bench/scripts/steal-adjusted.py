#!/usr/bin/env python3
"""Figures of one zcbench run compared at equal hypervisor steal.

On a shared VM the share of CPU time the hypervisor steals differs from
run to run, even between the servers of one round, and a latency follows
it (FINDINGS.md §9: rank correlation 0.80 between a cold run's hot p99 and
its server CPU's steal). Per-round ratios do not cancel that. This fits

    log(metric) = a[target] + b * steal

over every valid run (one slope b shared by all targets, fitted within
targets, so a target's own level does not bend it), and prints each
target's a against B's, i.e. the ratio of the two at equal steal, with a
bootstrap interval (runs resampled within each target, 2,000 times).

    bench/scripts/steal-adjusted.py RESULTS.json B [--metric M] [--steal server|client|max]

RESULTS.json is a cold.json or results.json of zcbench (runs recorded
without steal are left out); B a target name (e.g. nginx-aio). M defaults
to hot_p99_us for a cold run and mb_per_s otherwise; steal to `server`.
For a warm results.json every scenario cell is fitted on its own.
"""

import json
import math
import random
import statistics
import sys
from collections import defaultdict


def fit(cell):
    """cell: target -> [(steal, log value)]; returns (slope, {target: intercept})."""
    num = den = 0.0
    for runs in cell.values():
        ms = statistics.mean(s for s, _ in runs)
        my = statistics.mean(y for _, y in runs)
        num += sum((s - ms) * (y - my) for s, y in runs)
        den += sum((s - ms) ** 2 for s, _ in runs)
    b = num / den if den > 0 else 0.0
    return b, {
        t: statistics.mean(y for _, y in runs) - b * statistics.mean(s for s, _ in runs)
        for t, runs in cell.items()
    }


def main(argv):
    opts = {"--metric": None, "--steal": "server"}
    for k in list(opts):
        if k in argv:
            i = argv.index(k)
            opts[k] = argv[i + 1]
            del argv[i : i + 2]
    if len(argv) != 2:
        sys.exit(__doc__)
    path, base = argv
    with open(path) as f:
        results = json.load(f)["results"]
    cold = bool(results) and "size" not in results[0]
    metric = opts["--metric"] or ("hot_p99_us" if cold else "mb_per_s")
    which = opts["--steal"]
    if which not in ("server", "client", "max"):
        sys.exit(f"--steal: give server, client or max, not {which!r}")
    cells = defaultdict(lambda: defaultdict(list))
    for r in results:
        v = r.get(metric)
        ss, cs = r.get("server_steal"), r.get("client_steal")
        if which == "server":
            steal = ss
        elif which == "client":
            steal = cs
        else:
            known = [x for x in (ss, cs) if x is not None]
            steal = max(known) if known else None
        if not r.get("valid", True) or not v or steal is None:
            continue
        key = "cold" if cold else f'{r.get("client_read", "-")} {r["size"]} x{r["conns"]}'
        cells[key][r["target"]].append((steal, math.log(v)))
    rng = random.Random(1)
    print(f"metric: {metric}, at equal {which} steal; ratio to {base} (5-95 % bootstrap)")
    print("| cell | target | runs | steal range | ratio at equal steal | interval | slope (x per +10 % steal) |")
    print("|---|---|--:|---|--:|---|--:|")
    for key in sorted(cells):
        cell = cells[key]
        if base not in cell or len(cell) < 2:
            continue
        b, a = fit(cell)
        boots = defaultdict(list)
        for _ in range(2000):
            sample = {t: [rng.choice(runs) for _ in runs] for t, runs in cell.items()}
            _, ab = fit(sample)
            for t in cell:
                boots[t].append(math.exp(ab[t] - ab[base]))
        for t in sorted(cell):
            runs = cell[t]
            bs = sorted(boots[t])
            lo, hi = bs[int(0.05 * len(bs))], bs[int(0.95 * len(bs)) - 1]
            steals = [s for s, _ in runs]
            print(
                f"| {key} | {t} | {len(runs)} | {min(steals):.1%}-{max(steals):.1%} | "
                f"{math.exp(a[t] - a[base]):.3f} | {lo:.3f}-{hi:.3f} | {math.exp(b * 0.1):.2f} |"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
