#!/usr/bin/env python3
"""Who holds each CPU, from `perf sched timehist` output.

For every (CPU, task name) pair -- thread numbers folded, so zcserve-disk-0..15
count as one -- prints how many times it ran, its total run time, the
distribution of its run bursts (switch-in to switch-out) and of its
scheduling delay (woken to running). A long run burst of an event loop is
time every other connection of that loop waits; a long scheduling delay is
time it was kept off its CPU by someone else.

    perf sched record -a -o sched.data -- sleep 30   # during the run
    perf sched timehist -i sched.data > timehist.txt
    bench/scripts/sched-bursts.py timehist.txt [TOP]
"""

import collections
import re
import sys


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def main(argv):
    if not argv:
        sys.exit(__doc__)
    top = int(argv[1]) if len(argv) > 1 else 20
    runs = collections.defaultdict(list)
    delays = collections.defaultdict(list)
    with open(argv[0]) as f:
        for line in f:
            p = line.split()
            if len(p) < 6 or not p[0][0].isdigit():
                continue
            try:
                sch, run = float(p[-2]), float(p[-1])
            except ValueError:
                continue
            task = " ".join(p[2:-3])
            name = re.sub(r"\[\d+(/\d+)?\]", "", task)
            name = re.sub(r"\d+$", "N", name)
            runs[(p[1], name)].append(run)
            delays[(p[1], name)].append(sch)
    print("| CPU | task | runs | run total ms | burst p50 ms | p99 | max | sch delay p99 ms | p99.9 |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for key in sorted(runs, key=lambda k: -sum(runs[k]))[:top]:
        r, d = runs[key], delays[key]
        print(
            f"| {key[0]} | {key[1]} | {len(r)} | {sum(r):.0f} | {pct(r, .5):.3f} | "
            f"{pct(r, .99):.3f} | {max(r):.2f} | {pct(d, .99):.3f} | {pct(d, .999):.3f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
