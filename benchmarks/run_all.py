"""``make bench``: every benchmark in turn, then one table of the goals of issue 15 and their measured values.

Each benchmark runs in its own process (``sys.executable``, so the venv that runs this file), its output
passed through as it comes; the lines it prints with ``goals.goal_line`` / ``goals.note_line`` are kept and
printed again, per goal, at the end, with the goals no benchmark measured and each benchmark's wall time.
Every ratio is measured within one benchmark process, its contenders interleaved, so on a busy machine the
ratios stay comparable while the absolute times do not; the load average is printed beside them.

Run: ``python benchmarks/run_all.py`` (``--quick``: the benchmarks' smoke modes; ``--only NAME``: some).
Exits 1 if a benchmark failed (after the table).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from goals import GOALS, LINE

HERE = Path(__file__).resolve().parent

# (script, its arguments, its arguments under --quick); profile_sweep.py (a profile, no goal) and
# device_check.py (needs a GPU) are not benchmarks of the table.
BENCHMARKS = [
    ("bench_theory.py", [], []),
    ("bench_simulate.py", [], ["euler"]),
    ("bench_escape.py", [], []),
    ("bench_replicas.py", [], []),
    ("bench_executor.py", [], ["--steps", "100"]),
    ("bench_sweep.py", [], ["--quick"]),
    ("bench_measure.py", [], ["--quick"]),
]


def run(script: str, args: list[str]) -> tuple[int, float, list[tuple[int, str]]]:
    """Run one benchmark, echoing its output; returns its exit code, wall time and goal lines."""
    print(f"\n===== {script} {' '.join(args)}".rstrip(), flush=True)
    start = time.perf_counter()
    goals = []
    with subprocess.Popen([sys.executable, str(HERE / script), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1) as process:
        for line in process.stdout:
            print(line, end="", flush=True)
            match = LINE.match(line)
            if match:
                goals.append((int(match.group(1)), match.group(2).strip()))
    return process.returncode, time.perf_counter() - start, goals


def summary(results: dict[str, tuple[int, float, list[tuple[int, str]]]], wall: float) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{'=' * 100}\nIssue 15 goals ({len(os.sched_getaffinity(0))} cores, load average {load}; "
          "ratios interleaved within each run)")
    for number, goal in GOALS.items():
        print(f"\n{number}. {goal}")
        lines = [(script, text) for script, (_, _, goals) in results.items()
                 for n, text in goals if n == number]
        for script, text in lines:
            print(f"     {text}   [{script}]")
        if not lines:
            print("     not measured: no benchmark in benchmarks/ prints this goal")
    print("\nbenchmark wall times: " + ", ".join(
        f"{script} {seconds:.0f} s{'' if code == 0 else f' (FAILED, exit {code})'}"
        for script, (code, seconds, _) in results.items()))
    print(f"total {wall:.0f} s ({wall / 60:.1f} min)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the benchmarks' smoke modes")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only the benchmarks whose file name contains NAME (repeatable)")
    args = parser.parse_args()
    chosen = [b for b in BENCHMARKS if not args.only or any(name in b[0] for name in args.only)]
    if not chosen:
        parser.error(f"--only {args.only} matches none of {[b[0] for b in BENCHMARKS]}")
    start = time.perf_counter()
    results = {script: run(script, quick if args.quick else full) for script, full, quick in chosen}
    summary(results, time.perf_counter() - start)
    return int(any(code != 0 for code, _, _ in results.values()))


if __name__ == "__main__":
    sys.exit(main())
