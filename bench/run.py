"""Run the benchmarks: ``make bench`` (or ``.venv/bin/python bench/run.py``).

Prints one table -- every figure with its median, spread (min..max over the
repetitions), target and MET / NOT MET -- and writes the same as JSON to
``bench/results/bench-<UTC time>.json`` (and ``bench/results/latest.json``).

``--quick`` runs every benchmark with tiny sizes (the smoke test uses it so the
benchmarks cannot rot); its figures mean nothing.  The exit status is 0 when
every benchmark ran, whether or not its targets were met (``--strict``: 1 when
a target was NOT MET).

Run this script by path, not as ``python -m`` from the repository root: the
package measured must be the installed one, not the source tree.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from typing import Any

import accept
import listen_cost
import memory
import owner
from benchlib import HERE, Figure, machine, table, unavailable

SECTIONS = {
    "accept": accept.run,
    "listen": listen_cost.run,
    "owner": owner.run,
    "memory": memory.run,
}

FULL: dict[str, Any] = {
    "accept_seconds": 2,
    "accept_reps": 7,
    "accept_connections": 32,
    "listen_cycles": 300,
    "listen_reps": 9,
    "owner_sizes": [100, 1_000, 10_000],
    "owner_reps": 7,
    "owner_busy": (200, 50),  # processes of uid 65534, listening sockets each
    "memory_connections": 1_000,
    "memory_reps": 6,
}

QUICK: dict[str, Any] = {
    "accept_seconds": 1,
    "accept_reps": 1,
    "accept_connections": 4,
    "listen_cycles": 5,
    "listen_reps": 2,
    "owner_sizes": [10, 30],
    "owner_reps": 2,
    "owner_busy": (2, 3),
    "memory_connections": 20,
    "memory_reps": 1,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--out", default=os.path.join(HERE, "results"),
                        help="directory for the JSON results (default: bench/results)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is NOT MET")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in chosen:
        if s not in SECTIONS:
            parser.error(f"unknown benchmark {s!r}; choose from {', '.join(SECTIONS)}")
    cfg = QUICK if args.quick else FULL
    started = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    result: dict[str, Any] = {
        "date": stamp,
        "quick": args.quick,
        "config": cfg,
        "machine": machine(),
        "figures": [],
        "details": {},
        "errors": {},
    }
    figures: list[Figure] = []
    failed = False
    for name in chosen:
        t0 = time.monotonic()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            figs, details = SECTIONS[name](cfg)
        except Exception as e:
            failed = True
            result["errors"][name] = traceback.format_exc()
            figs = [unavailable(name, "benchmark failed", "-", "", f"{type(e).__name__}: {e}")]
            figs[0].verdict = "ERROR"
            details = {}
            traceback.print_exc()
        details["seconds"] = round(time.monotonic() - t0, 1)
        figures += figs
        result["details"][name] = details
    result["figures"] = [f.as_dict() for f in figures]
    result["seconds"] = round(time.time() - started, 1)
    verdicts = [f.verdict for f in figures]
    result["summary"] = {v: verdicts.count(v) for v in sorted(set(verdicts))}

    print()
    print(f"twisted-patch benchmarks, {stamp}, {result['machine'].get('cpu_model', '?')}, "
          f"{result['machine']['cpus_available']} CPUs, Python {result['machine']['python']}"
          + (" (QUICK: sizes too small to mean anything)" if args.quick else ""))
    print(table(figures))
    print()
    for name in chosen:
        d = result["details"].get(name, {})
        if name == "accept" and "pinning" in d:
            print(f"accept: {d['pinning']}; xtcp endpoint: {d['xtcp_description']}")
        if name == "listen" and "all_protections" in d:
            print(f"listen: {d['all_protections']}")
    met = verdicts.count("MET")
    targets = met + verdicts.count("NOT MET")
    print(f"targets met: {met} of {targets}; took {result['seconds']} s")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"bench-{stamp.replace(':', '')}.json")
    for p in (path, os.path.join(args.out, "latest.json")):
        with open(p, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    print(f"results: {path}")
    if failed:
        return 2
    if args.strict and met < targets:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
