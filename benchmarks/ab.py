"""Before and after: the common case of a test, timed for this checkout and
for an earlier commit, side by side in one run.

    python benchmarks/ab.py [--baseline REF] [--rounds N]

Two figures, each the median of interleaved rounds (baseline, current,
baseline, ...) so that drift of the machine hits both alike:

- *start + one mail + stop*: ``Server().start()``, one message with smtplib,
  ``stop()``, with the loop thread kept running as the plugin keeps it;
- *sequential rate*: messages per second over one smtplib connection.

The baseline is ``git archive``-d into a temporary directory and imported
from there in a child process; so is the current checkout (from its working
tree), so both pay the same costs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Run in a child process with the tree under test first on sys.path.
CHILD = r"""
import gc, json, smtplib, sys, time
from pytest_smtpd import Server, loopthread

ONE_MAIL_REPS, SEQUENTIAL = int(sys.argv[1]), int(sys.argv[2])
BODY = b"Subject: bench\r\n\r\n" + b"x" * 1000 + b"\r\n"

def one_mail():
    gc.disable()
    try:
        t0 = time.perf_counter()
        server = Server()
        server.start()
        with smtplib.SMTP(server.host, server.port) as client:
            client.sendmail("a@example.com", ["b@example.com"], BODY)
        server.stop()
        return time.perf_counter() - t0
    finally:
        gc.enable()

with loopthread.kept_running():
    one_mail()  # warm-up: imports, first connection
    samples = sorted(one_mail() for _ in range(ONE_MAIL_REPS))
    with Server() as server, smtplib.SMTP(server.host, server.port) as client:
        client.sendmail("a@example.com", ["b@example.com"], BODY)
        t0 = time.perf_counter()
        for _ in range(SEQUENTIAL):
            client.sendmail("a@example.com", ["b@example.com"], BODY)
        rate = SEQUENTIAL / (time.perf_counter() - t0)
print(json.dumps({"one_mail": samples[len(samples) // 2], "rate": rate}))
"""


def export(ref: str | None, into: Path) -> Path:
    """The package of ``ref`` (None: the working tree) under ``into``."""
    if ref is None:
        return ROOT
    archive = into / "tree.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", ref, "pytest_smtpd"], cwd=ROOT, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data") if sys.version_info >= (3, 12) else tar.extractall(into)
    return into


def measure(tree: Path, reps: int, sequential: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(reps), str(sequential)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        cwd=tempfile.gettempdir(),
    )
    figures: dict[str, float] = json.loads(result.stdout)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="HEAD~1", help="the git ref to compare with (default HEAD~1)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--reps", type=int, default=200, help="start+mail+stop repetitions per round")
    parser.add_argument("--sequential", type=int, default=500, help="messages per round on one connection")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"baseline": export(args.baseline, Path(tmp)), "current": export(None, Path(tmp))}
        runs: dict[str, list[dict[str, float]]] = {"baseline": [], "current": []}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                runs[name].append(measure(tree, args.reps, args.sequential))
    one = {name: statistics.median(r["one_mail"] for r in rs) * 1000 for name, rs in runs.items()}
    rate = {name: statistics.median(r["rate"] for r in rs) for name, rs in runs.items()}
    print(f"baseline: {args.baseline}, {args.rounds} rounds, medians")
    print(f"{'':28}{'baseline':>12}{'current':>12}{'change':>9}")
    change = one["current"] / one["baseline"] - 1
    print(f"{'start + one mail + stop':28}{one['baseline']:>10.3f}ms{one['current']:>10.3f}ms{change:>+9.1%}")
    change = rate["current"] / rate["baseline"] - 1
    figures = f"{rate['baseline']:>7,.0f}msg/s{rate['current']:>7,.0f}msg/s"
    print(f"{'sequential, one connection':28}{figures}{change:>+9.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
