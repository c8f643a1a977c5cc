#!/usr/bin/env python3
"""Redis-side cost of the shared-windows script (src/scoring/shared_windows.lua)
per declaration, read from Redis's own INFO commandstats, for one or more
versions of the script, alternated so that the machine's load falls on each.

    redis-server --port 6399 --save '' --appendonly no --daemonize yes
    pip install redis
    python3 scripts/shared_windows_bench.py [--port 6399] [--rounds 5] A.lua [B.lua ...]

Traffic: 100 batches of 256 declarations, 20,000 buyers drawn at random (so
that windows are read back as well as created), half with an IOSS number.
Each version starts from an empty Redis (FLUSHALL) and gets the same batches.
Prints the median and every round's figure per version.
"""
import argparse
import random
import statistics

import redis


def batches(count=100, size=256, seed=1):
    rng = random.Random(seed)
    buyers = [rng.getrandbits(63) for _ in range(20_000)]
    start = 1_788_000_000_000_000  # microseconds, 2026
    out = []
    for k in range(count):
        # ARGV header: prefix, split and party windows (us), caps, TTLs (ms),
        # the day counted in, the batch size; then 8 values per declaration.
        args = ["{bench}", 86_400_000_000, 2_592_000_000_000, 64, 32, 90_000_000,
                2_682_000_000, "1788000000", size]
        t0 = start + k * size * 1_000_000
        for i in range(size):
            b = rng.choice(buyers)
            ioss = rng.choice(["", str(rng.getrandbits(60))])
            args += [b, b ^ 7, b ^ 9, ioss, rng.getrandbits(60), rng.getrandbits(60),
                     t0 + i * 1_000_000, rng.randint(100, 20_000)]
        out.append(args)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=6399)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("scripts", nargs="+")
    a = parser.parse_args()
    r = redis.Redis(port=a.port)
    traffic = batches()
    per_decl = {path: [] for path in a.scripts}
    for _ in range(a.rounds):
        for path in a.scripts:
            script = r.register_script(open(path).read())
            r.flushall()
            r.config_resetstat()
            for args in traffic:
                script(keys=["{bench}:observed"], args=args)
            stats = r.info("commandstats").get("cmdstat_evalsha", {})
            per_decl[path].append(stats.get("usec_per_call", 0.0) / 256)
    for path, figures in per_decl.items():
        shown = " ".join(f"{f:.1f}" for f in figures)
        print(f"{path}: median {statistics.median(figures):.1f} us of Redis time per declaration ({shown})")


if __name__ == "__main__":
    main()
