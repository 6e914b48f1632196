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
from twisted_patch.port import ExclusivePort
from twisted_patch.port.dropin import dropin_class

DropInExclusivePort = dropin_class(ExclusivePort)


def main() -> None:
    counts_path = sys.argv[1]
    del sys.argv[1]
    counts: Counter[str] = Counter()
    original = DropInExclusivePort.startListening

    def counting_start(self: ExclusivePort) -> None:
        original(self)
        counts[type(self.reactor).__name__] += 1

    DropInExclusivePort.startListening = counting_start  # type: ignore[method-assign]

    def write() -> None:
        with open(counts_path, "w") as f:
            json.dump(dict(counts), f)

    atexit.register(write)
    twisted_patch.install()
    from twisted.scripts.trial import run

    run()


if __name__ == "__main__":
    main()
