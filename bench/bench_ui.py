"""UI benchmark: `mini-mlflow ui` in a real headless Chromium, the issue's targets, and MLflow's UI beside it.

Usage: python bench/bench_ui.py [--quick]

Needs Debian's Chromium (`make browser`) and playwright (the dev extras). Generates two stores on disk:
10,000 runs (the W1 store of bench_read, 1,000 with --quick) for the table, and one with a 1,000,000-point
metric and 20 runs × 100,000 points for the charts. Starts `mini-mlflow ui` as a process for each and
times what a user waits for, from the page's own marks (fetch + draw) and from the driver's side. When
mlflow is importable, exports the table's store with `mini-mlflow export --format mlflow`, starts
`mlflow server` on it and times its runs page the same way. Prints one Markdown section to stdout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.client import HTTPConnection
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from bench_read import T0, _points, backdate, iso, log, make_runs, ms, write_ours  # noqa: E402

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ENV = {**os.environ, "PYTHONPATH": ROOT}
Row = tuple[str, str, str, str]


def start_ui(root: str) -> tuple[subprocess.Popen[str], str, float]:
    """``mini-mlflow ui`` as a process: (process, base URL, seconds from start to the ready line)."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mini_mlflow", "ui", "--root", root, "--port", "0"],
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    took = time.perf_counter() - t
    return proc, line.split()[3], took


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_long_run(root: str, name: str, points: int) -> str:
    run_id = uuid.uuid4().hex
    rdir = os.path.join(root, "0", run_id)
    for sub in ("params", "metrics", "tags", "artifacts"):
        os.makedirs(os.path.join(rdir, sub))
    with open(os.path.join(rdir, "meta.yaml"), "w") as f:
        f.write(
            f"format_version: 1\nrun_id: {run_id}\nrun_name: {name}\nexperiment_id: '0'\nstatus: FINISHED\n"
            f"start_time: '{iso(T0)}'\nend_time: '{iso(T0 + points)}'\nlifecycle_stage: active\n"
        )
    with open(os.path.join(rdir, "metrics", "loss.jsonl"), "w") as f:
        for start in range(0, points, 100_000):
            f.write(_points(start, min(points, start + 100_000) - start))
    return run_id


def wait_js(page: Any, expression: str, timeout: float = 120) -> Any:
    """Wait for a JS expression to be truthy and return its value, polled inside the page (every 2 ms,
    one call from the driver: polling from outside would take the page's main thread at every try and
    slow what is timed). The page's CSP forbids the eval that wait_for_function uses; a function given
    to ``evaluate`` is compiled by the browser, not by the page."""
    value = page.evaluate(
        "async (limit) => { const end = performance.now() + limit;"
        f" for (;;) {{ const value = ({expression}); if (value) return value;"
        " if (performance.now() > end) return null; await new Promise((r) => setTimeout(r, 2)); } }",
        timeout * 1000,
    )
    if not value:
        raise TimeoutError(expression)
    return value


#: When the runs table's first row was painted, in the page's clock (Element Timing: the table marks
#: that cell), waiting for the paint if it is still to come.
FIRST_ROW_PAINTED = (
    "new Promise((done) => new PerformanceObserver((list) => {"
    " const e = list.getEntries().find((x) => x.identifier === 'runs-first-row');"
    " if (e) done(e.renderTime); })"
    ".observe({ type: 'element', buffered: true }))"
)


def chart_load(page: Any, url: str, key: str = "loss") -> float:
    """Seconds from navigation to the chart's first draw with its data."""
    t = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(f".chart[data-key='{key}'][data-load-ms]", timeout=120_000)
    return time.perf_counter() - t


def table_rows(tmp: str, browser: Any, n: int, quick: bool) -> tuple[list[Row], str]:
    root = os.path.join(tmp, "table")
    log(f"writing {n:,} runs ...")
    write_ours(root, make_runs(n, 20))
    backdate(root)
    os.sync()  # the kernel's write-back of the new store is not the UI's time
    proc, base, _ = start_ui(root)
    rows: list[Row] = []
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{base}/#/runs?e=0")  # warms the server's index (first load builds it)
        page.wait_for_selector("#view[data-ready]", timeout=300_000)
        loads, marks, paints = [], [], []
        for _ in range(5):
            page.goto("about:blank")  # a new document each time: its clock starts at the navigation
            t = time.perf_counter()
            page.goto(f"{base}/#/runs?e=0")
            page.wait_for_selector("#view[data-ready]", timeout=60_000)
            loads.append(time.perf_counter() - t)
            marks.append(
                page.evaluate("performance.getEntriesByName('runs-table-rendered')[0].startTime") / 1000
            )
            paints.append(page.evaluate(FIRST_ROW_PAINTED) / 1000)
        rows.append(
            (
                f"{n:,}-run table: first contentful paint of the rows (server warm), page's own clock",
                ms(statistics.median(paints)),
                "≤ 300 ms",
                "navigation to the first row painted (Element Timing); rows in the DOM: "
                f"{ms(statistics.median(marks))}; driver's view, navigation to rows shown: "
                f"{ms(statistics.median(loads))}",
            )
        )
        refilter, refilter_page = [], []
        # the page's own view: the Enter key's event time to the new table's first row painted
        page.evaluate(
            "document.addEventListener('keydown',"
            " (e) => { if (e.key === 'Enter') window.benchEnterAt = e.timeStamp; }, true);"
            " window.benchPaints = [];"
            " new PerformanceObserver((l) => {"
            " for (const e of l.getEntries()) window.benchPaints.push(e.renderTime); })"
            ".observe({ type: 'element' })"
        )
        for i in range(5):
            # a filter of its own each time: no answer computed for an earlier one can serve it
            flt = f"params.optimizer = '{['adam', 'sgd', 'adamw'][i % 3]}' and params.layers > {i}"
            page.fill("#filter", flt)
            t = time.perf_counter()
            page.press("#filter", "Enter")
            wait_js(
                page, f"miniMlflow.page.params.f === {flt!r} && document.querySelector('#view[data-ready]')"
            )
            refilter.append(time.perf_counter() - t)
            painted = wait_js(
                page,
                "Math.min(...window.benchPaints.filter((t) => t > window.benchEnterAt)) < Infinity"
                " && Math.min(...window.benchPaints.filter((t) => t > window.benchEnterAt))",
            )
            refilter_page.append((painted - page.evaluate("window.benchEnterAt")) / 1000)
        sort = []
        for col in ("m:acc", "a:name", "p:lr", "m:loss", "a:start"):
            t = time.perf_counter()
            page.click(f"#runs th[data-col='{col}']")
            wait_js(page, f"location.hash.includes('s={col}')")
            sort.append(time.perf_counter() - t)
        rows.append(
            (
                f"re-filter of that table (MLflow grammar, server-side), end to end, {n:,} runs,"
                " page's own marks",
                ms(statistics.median(refilter_page)),
                "≤ 100 ms",
                "Enter's event to the new first row painted (Element Timing); driver's view, keypress to "
                "rows shown: " + ms(statistics.median(refilter)),
            )
        )
        rows.append(
            (f"re-sort of {n:,} runs (in the page), end to end", ms(statistics.median(sort)), "≤ 100 ms", "")
        )
        rows.append(
            (
                f"server memory (RSS) with the {n:,}-run store open and its table served",
                f"{rss_mb(proc.pid):.0f} MB",
                "≤ 150 MB",
                "",
            )
        )
        page.close()
    finally:
        proc.terminate()
        proc.wait(10)
    return rows, root


def chart_rows(tmp: str, browser: Any, big: int, many: int, many_points: int) -> list[Row]:
    root = os.path.join(tmp, "charts")
    os.makedirs(os.path.join(root, "0"))
    with open(os.path.join(root, "0", "meta.yaml"), "w") as f:
        f.write("format_version: 1\nexperiment_id: '0'\nname: Default\nlifecycle_stage: active\n")
    log(f"writing a {big:,}-point metric and {many} runs × {many_points:,} points ...")
    big_id = write_long_run(root, "long", big)
    overlay = [write_long_run(root, f"r{i}", many_points) for i in range(many)]
    backdate(root)
    os.sync()  # 180 MB just written: their write-back is not the first chart's time
    proc, base, _ = start_ui(root)
    rows: list[Row] = []
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        first = chart_load(page, f"{base}/#/run/{big_id[:8]}")
        # the page's own clock: from its navigation to the chart drawn with its data
        first_page = float(
            page.evaluate("document.querySelector(\".chart[data-key='loss']\").dataset.drawnAt")
        )
        repeat = statistics.median(chart_load(page, f"{base}/#/run/{big_id[:8]}?r={i}") for i in range(5))
        rows.append(
            (
                f"chart of one {big:,}-point metric: first (server just started, page's own clock) / repeat",
                f"{ms(first_page / 1000)} / {ms(repeat)}",
                "≤ 1.5 s / ≤ 200 ms",
                f"first: navigation to drawn, M4 at the chart's width; driver's view {ms(first)}; "
                "repeat: driver's view",
            )
        )
        zooms = []
        for i in range(5):
            lo = big * (0.1 + 0.15 * i)
            t = time.perf_counter()
            page.evaluate(f"miniMlflow.page.charts.get('loss').opts.onZoom({lo}, {lo + big * 0.05})")
            wait_js(
                page,
                "(() => { const c = miniMlflow.page.charts.get('loss');"
                " return c && c.el.dataset.loadMs; })()",
            )
            zooms.append(time.perf_counter() - t)
        rows.append(
            (
                "zoom into 5 % of that metric (refetched at full resolution)",
                ms(statistics.median(zooms)),
                "≤ 150 ms",
                "",
            )
        )
        refs = ",".join(r[:8] for r in overlay)
        chart_load(page, f"{base}/#/compare?r={refs}")
        warm = statistics.median(chart_load(page, f"{base}/#/compare?r={refs}&w={i}") for i in range(3))
        rows.append(
            (
                f"{many} runs × {many_points:,} points overlaid, warm",
                ms(warm),
                "≤ 1 s warm",
                "one request, M4 per run",
            )
        )
        rows.append(live_row(page, base, root))
        rows.append(concurrency_row(base, root, overlay))
        rows.append(
            (
                "server memory (RSS) after these charts",
                f"{rss_mb(proc.pid):.0f} MB",
                "",
                "histories held for zoom",
            )
        )
        page.close()
    finally:
        proc.terminate()
        proc.wait(10)
    return rows


def live_row(page: Any, base: str, root: str) -> Row:
    """A point logged by a live run (default 0.1 s flush) until the open page has drawn it."""
    code = (
        "import sys, time, mini_mlflow as mm\n"
        f"run = mm.Run(runs_dir={root!r}, name='live')\n"
        "run.log_metric('loss', 0.0, step=0); run.flush()\n"
        "print(run.run_id, flush=True)\n"
        "sys.stdin.readline()\n"
        "for step in range(1, 41):\n"
        "    run.log_metric('loss', time.time() * 1000, step=step)\n"
        "    time.sleep(0.25)\n"
        "run.end()\n"
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", code], env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    run_id = writer.stdout.readline().strip()  # type: ignore[union-attr]
    page.goto(f"{base}/#/run/{run_id[:8]}")
    page.wait_for_selector(".chart[data-key='loss'][data-drawn]")
    page.wait_for_selector("#live.on")
    page.evaluate(
        """() => { window.latencies = [];
          const el = document.querySelector(".chart[data-key='loss']");
          new MutationObserver(() => {
            const s = miniMlflow.page.charts.get('loss').series[0];
            const v = s.y[s.y.length - 1];
            if (v > 1e12) window.latencies.push(Date.now() - v);
          }).observe(el, { attributes: true, attributeFilter: ["data-last-x"] }); }"""
    )
    writer.stdin.write("go\n")  # type: ignore[union-attr]
    writer.stdin.flush()  # type: ignore[union-attr]
    writer.wait(60)
    time.sleep(0.5)
    lat = sorted(page.evaluate("window.latencies"))
    p50 = lat[len(lat) // 2] if lat else float("nan")
    p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))] if lat else float("nan")
    return (
        "a point logged by a live run → drawn in the open page",
        f"p50 {p50:.0f} ms, p95 {p95:.0f} ms",
        "p95 ≤ 500 ms",
        f"{len(lat)} points, one every 0.25 s, default 0.1 s flush, Server-Sent Events, 50 ms server poll",
    )


def concurrency_row(base: str, root: str, runs: list[str]) -> Row:
    """20 clients browsing (runs table, a run, a chart) while 4 runs write at full speed."""
    code = (
        "import sys, time, mini_mlflow as mm\n"
        f"run = mm.Run(runs_dir={root!r}, name='writer')\n"
        "end = time.monotonic() + float(sys.argv[1])\n"
        "step = 0\n"
        "while time.monotonic() < end:\n"
        "    for _ in range(1000):\n"
        "        run.log_metric('loss', step * 0.001, step=step); step += 1\n"
        "run.end()\n"
        "print(step)\n"
    )
    seconds = 15.0
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(seconds)], env=ENV, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    host, port = base.split("//")[1].split(":")
    paths = [
        "/api/experiments",
        "/api/runs?e=0",
        f"/api/run/{runs[0]}",
        f"/api/series?run={runs[1]}&key=loss&cols=1400",
    ]
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds - 2

    def client(i: int) -> None:
        conn = HTTPConnection(host, int(port), timeout=30)
        k = i
        while time.monotonic() < stop:
            path = paths[k % len(paths)]
            k += 1
            t = time.perf_counter()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except OSError as exc:
                ok = False
                conn = HTTPConnection(host, int(port), timeout=30)
                path += f" ({exc})"
            took = time.perf_counter() - t
            with lock:
                times.append(took)
                if not ok:
                    errors.append(path)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    points = sum(int(w.communicate(timeout=60)[0] or 0) for w in writers)
    times.sort()
    p95 = times[int(len(times) * 0.95)] if times else float("nan")
    return (
        "20 concurrent clients browsing while 4 runs write at full speed (W3)",
        f"p95 {ms(p95)}, p50 {ms(times[len(times) // 2])}, {len(errors)} errors",
        "p95 ≤ 300 ms, no error",
        f"{len(times):,} requests in {seconds - 2:.0f} s (table, run, chart, experiments); "
        f"writers logged {points:,} points",
    )


def mlflow_rows(tmp: str, browser: Any, root: str, n: int) -> list[Row]:
    try:
        import mlflow
    except ImportError:
        return [("MLflow UI", "not measured", "", "mlflow is not installed in this environment")]
    out = os.path.join(tmp, "mlflow_export")
    log("exporting for MLflow ...")
    subprocess.run(
        [sys.executable, "-m", "mini_mlflow", "--root", root, "export", "--format", "mlflow", out, "--all"],
        env=ENV,
        check=True,
        capture_output=True,
    )
    mlflow_bin = shutil.which("mlflow") or os.path.join(os.path.dirname(sys.executable), "mlflow")
    db = os.path.join(tmp, "mlflow.db")
    log("migrating the export to SQLite (MLflow 3's server refuses a file store by default) ...")
    subprocess.run(
        [mlflow_bin, "migrate-filestore", "--source", out, "--target", f"sqlite:///{db}", "--no-progress"],
        check=True,
        capture_output=True,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            mlflow_bin,
            "server",
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows: list[Row] = []
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                conn = HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("mlflow server did not start")
            time.sleep(0.5)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        url = f"http://127.0.0.1:{port}/#/experiments/0/runs"
        loads = []
        for _ in range(3):
            t = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("text=run-", timeout=120_000)  # any run's name in the table
            loads.append(time.perf_counter() - t)
        rows.append(
            (
                f"MLflow {mlflow.__version__} UI, same {n:,} runs (export → SQLite): "
                "runs page until rows show",
                ms(statistics.median(loads)),
                "",
                "first page of runs (MLflow loads 100 at a time)",
            )
        )
        page.close()
    except Exception as exc:  # a peer's UI we do not control: report, do not fail our bench
        rows.append(("MLflow UI", "not measured", "", f"{type(exc).__name__}: {str(exc)[:120]}"))
    finally:
        server.terminate()
        server.wait(20)
    return rows


def ready_row() -> Row:
    times = []
    for _ in range(5):
        proc, _, took = start_ui(os.path.join(ROOT, "mlruns.sample"))
        proc.terminate()
        proc.wait(10)
        times.append(took)
    return (
        "`mini-mlflow ui` ready on the sample store (process start → ready line)",
        ms(statistics.median(times)),
        "≤ 300 ms",
        "",
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        print("## UI: `mini-mlflow ui` in headless Chromium\n\nNot measured: no Chromium (`make browser`).")
        return 0
    n = 1_000 if args.quick else 10_000
    big = 200_000 if args.quick else 1_000_000
    many, many_points = (5, 20_000) if args.quick else (20, 100_000)
    tmp = tempfile.mkdtemp(prefix="bench-ui-")
    try:
        rows: list[Row] = [ready_row()]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
            version = browser.version
            table, table_root = table_rows(tmp, browser, n, args.quick)
            rows += table
            log("\n".join(" | ".join(r) for r in table))
            charts = chart_rows(tmp, browser, big, many, many_points)
            rows += charts
            log("\n".join(" | ".join(r) for r in charts))
            rows += mlflow_rows(tmp, browser, table_root, n)
            browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for row in rows:
        log(" | ".join(row))
    print("## UI: `mini-mlflow ui` in headless Chromium\n")
    print(
        f"Chromium {version} (Debian's, headless) driven by playwright; the server is `mini-mlflow ui` as "
        "its own process. Medians unless a percentile is named. Times include the driver's round trips "
        "(a few ms).\n"
    )
    print("| what | time | target | note |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
