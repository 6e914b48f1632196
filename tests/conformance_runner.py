"""Run trial with twisted_patch.install() active (used by test_conformance.py).

``python conformance_runner.py COUNTS.json TRIAL-ARGS...``: installs the
process-wide patch (so that the reactors Twisted's ReactorBuilder tests build
for themselves are hardened too, not only the global one chosen with
``--reactor=exclusive``), counts the hardened ports created per reactor
class, runs trial, and writes the counts to COUNTS.json at exit.
"""

from __future__ import annotations

import atexit
import json
import sys
from collections import Counter

import twisted_patch
from twisted_patch import reactor as exclusive_reactor


def main() -> None:
    counts_path = sys.argv[1]
    del sys.argv[1]
    counts: Counter[str] = Counter()
    original = exclusive_reactor.DropInExclusivePort.startListening

    def counting_start(self: exclusive_reactor.DropInExclusivePort) -> None:
        original(self)
        counts[type(self.reactor).__name__] += 1

    exclusive_reactor.DropInExclusivePort.startListening = counting_start  # type: ignore[method-assign]

    def write() -> None:
        with open(counts_path, "w") as f:
            json.dump(dict(counts), f)

    atexit.register(write)
    twisted_patch.install()
    from twisted.scripts.trial import run

    run()


if __name__ == "__main__":
    main()
