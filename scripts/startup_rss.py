#!/usr/bin/env python3
"""Startup time and resident memory of `serve` with the built-in default model
against the same model read from models/default, alternated six times.

    python3 scripts/startup_rss.py [BINARY ...]   (default target/release/parcel-risk)

Startup: from spawn to the "serving parcelrisk.v1.RiskService" log line.
RSS: VmRSS 0.3 s after it. Prints the median of each.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(binary, args):
    data_dir = tempfile.mkdtemp()
    started = time.monotonic()
    server = subprocess.Popen(
        [binary, "serve", "--addr", "127.0.0.1:0", "--metrics-addr", "off", "--data-dir", data_dir] + args,
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT)
    startup = None
    for line in server.stderr:
        if "serving parcelrisk" in line:
            startup = time.monotonic() - started
            break
    time.sleep(0.3)
    with open(f"/proc/{server.pid}/status") as status:
        rss = next(int(l.split()[1]) / 1024 for l in status if l.startswith("VmRSS:"))
    server.kill()
    server.wait()
    if startup is None:
        sys.exit(f"{binary} {' '.join(args)}: never logged that it was serving")
    return startup, rss


def main():
    binaries = sys.argv[1:] or [os.path.join(ROOT, "target/release/parcel-risk")]
    configs = [(b, a) for b in binaries for a in ([], ["--model", "models/default"])]
    results = {(b, " ".join(a)): [] for b, a in configs}
    for _ in range(6):
        for b, a in configs:
            results[(b, " ".join(a))].append(run(b, a))
    for (binary, args), runs in results.items():
        print(f"{binary} {args or '(built-in model)'}: startup median "
              f"{statistics.median(r[0] for r in runs):.3f} s, RSS median "
              f"{statistics.median(r[1] for r in runs):.1f} MiB")


if __name__ == "__main__":
    main()
