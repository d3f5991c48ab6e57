"""Per-message cost: pytest-smtpd's ``Server`` beside aiosmtpd and a
do-nothing asyncio server, in one process, as a test suite runs them.

Two clients, each in the main thread as a test's code would be (so they
share the GIL with the server's loop thread):

- smtplib on one connection, sending ``--messages`` small messages in a row;
- 20 aiosmtplib clients on one event loop, 50 messages each.

``--pin CPU`` pins the process (and so every thread it starts) to one CPU
before any server starts: what each pytest-xdist worker gets on a 2-core CI
runner. Repetitions interleave the servers so that drift hits them alike;
the figures are medians of messages per second, and of the server loop
thread's CPU time per message (the steadier measure on a busy machine).

``bench.py`` runs this script twice in subprocesses, pinned and not, and puts
both in its table; ``--json PATH`` writes the samples.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import smtplib
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # the subjects and helpers live there

#: The small message every client sends (about 500 bytes).
BODY = bench.make_body(500)


def smtplib_one_connection(subject: bench.Subject, count: int) -> float:
    """Messages per second for ``count`` messages over one smtplib connection."""
    subject.clear()
    with smtplib.SMTP(bench.HOST, subject.port, local_hostname="bench.client", timeout=bench.IO_TIMEOUT) as client:
        t0 = time.perf_counter()
        for _ in range(count):
            client.sendmail(bench.SENDER, [bench.RECIPIENT], BODY)
        elapsed = time.perf_counter() - t0
    bench.wait_held(subject, count)
    return count / elapsed


def measure(
    subjects: Sequence[bench.Subject], reps: int, run: Callable[[bench.Subject], tuple[float, int]]
) -> dict[str, dict[str, list[float]]]:
    """{name: {"rate": [...], "cpu_us": [...]}}, one warm-up round not counted."""
    found: dict[str, dict[str, list[float]]] = {s.name: {"rate": [], "cpu_us": []} for s in subjects}
    for rep in range(-1, reps):
        for subject in subjects:
            gc.collect()
            thread = bench.server_thread(subject)
            cpu_before = bench.thread_cpu_seconds(thread)
            rate, messages = run(subject)
            cpu = bench.thread_cpu_seconds(thread) - cpu_before
            subject.clear()
            if rep >= 0:
                found[subject.name]["rate"].append(rate)
                found[subject.name]["cpu_us"].append(cpu / messages * 1e6)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pin", type=int, metavar="CPU", help="pin the process to this CPU first")
    parser.add_argument("--messages", type=int, default=2000, help="smtplib messages per repetition")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--per-client", type=int, default=50)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--no-aiosmtpd", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})

    subjects: list[Any] = [bench.Ours()]
    if not args.no_aiosmtpd and bench.aiosmtpd_available():
        subjects.append(bench.Aiosmtpd())
    subjects.append(bench.NoOpServer())
    for subject in subjects:
        subject.start()
    sizes = bench.Sizes(clients=args.clients, messages_per_client=args.per_client)
    total = args.clients * args.per_client

    def clients(subject: bench.Subject) -> tuple[float, int]:
        return bench.run_clients(subject, sizes, BODY), total

    def one_connection(subject: bench.Subject) -> tuple[float, int]:
        return smtplib_one_connection(subject, args.messages), args.messages

    try:
        results = {
            "smtplib": measure(subjects, args.reps, one_connection),
            "aiosmtplib": measure(subjects, args.reps, clients),
        }
    finally:
        for subject in subjects:
            subject.stop()
    document = {"pinned": args.pin is not None, "cpus": sorted(os.sched_getaffinity(0)), "results": results}
    for case, by_subject in results.items():
        line = [f"{case:<10} pinned={args.pin is not None!s:<5}"]
        for name, figures in by_subject.items():
            rate, cpu = statistics.median(figures["rate"]), statistics.median(figures["cpu_us"])
            line.append(f"{name} {rate:8,.0f} msg/s {cpu:6.1f} us")
        print("  ".join(line))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(document, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
