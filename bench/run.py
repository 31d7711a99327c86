"""Run the ``bench/bench_*.py`` benches in one session and put their sections into ``bench/README.md``.

Each bench prints one Markdown section. In the report file a section lies between the marks
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``: a run replaces only the sections of the benches it
ran, each stamped with when and where it ran, and keeps everything outside the marks (the header, the
notes written under a section by hand). A bench that fails leaves its old section in place and makes
this script exit 1. Measurements inside a bench are side by side (ratios), because machines are noisy.

    python bench/run.py [--quick] [--only hotpath,read] [--markdown bench/README.md]
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

HEADER = """# Benchmarks

Produced by `make bench` (which runs `python bench/run.py` in a separate environment, `.venv-bench`,
holding the peers from `bench/requirements.txt`; none of them is a dependency of mini_mlflow).
Numbers are medians measured side by side in one run; compare the ratios, not the absolute times:
the machines are shared and noisy.
"""


def begin_mark(name: str) -> str:
    return f"<!-- bench:{name} -->"


def end_mark(name: str) -> str:
    return f"<!-- /bench:{name} -->"


def splice(report: str, name: str, section: str) -> str:
    """``report`` with bench ``name``'s section replaced by ``section`` (appended if it has none)."""
    begin, end = begin_mark(name), end_mark(name)
    block = f"{begin}\n{section.strip()}\n{end}"
    start = report.find(begin)
    stop = report.find(end, start) if start >= 0 else -1
    if start < 0 or stop < 0:
        return report.rstrip("\n") + "\n\n" + block + "\n"
    return report[:start] + block + report[stop + len(end) :]


def where() -> str:
    python = platform.python_version()
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {python}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", default="", help="comma-separated bench names, e.g. hotpath,read")
    parser.add_argument("--markdown", default="", help="put the sections into this report file")
    args = parser.parse_args()
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    benches = {
        os.path.basename(p)[len("bench_") : -len(".py")]: p
        for p in glob.glob(os.path.join(HERE, "bench_*.py"))
    }
    if wanted - set(benches):
        names = ", ".join(sorted(wanted - set(benches)))
        print(f"error: no such bench: {names} (there are: {', '.join(sorted(benches))})", file=sys.stderr)
        return 2
    sections: dict[str, str] = {}
    failed = []
    for name, path in sorted(benches.items()):
        if wanted and name not in wanted:
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        cmd = [sys.executable, path] + (["--quick"] if args.quick else [])
        result = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        took = time.perf_counter() - t0
        if result.returncode != 0:
            failed.append(name)
            print(f"bench_{name}.py FAILED (exit {result.returncode}) after {took:.0f} s", file=sys.stderr)
            continue
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        quick = ", --quick" if args.quick else ""
        sections[name] = (
            result.stdout.strip() + f"\n\n_(bench_{name}.py: {took:.0f} s, {stamp}, {where()}{quick})_\n"
        )
    for section in sections.values():
        print(section)
    if args.markdown:
        try:
            with open(args.markdown) as f:
                report = f.read()
        except FileNotFoundError:
            report = HEADER
        for name, section in sections.items():
            report = splice(report, name, section)
        with open(args.markdown, "w") as f:
            f.write(report)
    if failed:
        print(f"failed (their old sections are kept): {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
