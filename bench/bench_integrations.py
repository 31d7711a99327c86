"""Integrations benchmark: µs that each framework integration adds per step, beside no logger and peers.

Two measures per framework, side by side in one process:
- per call: the integration's hook called as the framework calls it (Lightning: ``log_metrics`` and
  then ``save`` on every step), median over batches of calls;
- end to end (Lightning, Keras, XGBoost, LightGBM): the same training with no logger, ours and each
  peer installed here, rounds interleaved, median wall time per step; "added" is against no logger.
Frameworks or peers that are not installed are listed as not measured. System metrics: the sampling
thread's CPU time per sample, as a share of one core at the default interval.

    python bench/bench_integrations.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import mini_mlflow as mm  # noqa: E402

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
ROWS: list[str] = []
NOT_MEASURED: list[str] = []


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def have(*modules: str) -> bool:
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # ImportError, or a framework that fails to import here
            NOT_MEASURED.append(f"{module} ({type(exc).__name__})")
            return False
    return True


def per_call_us(call: Callable[[int], None], n: int, reps: int = 5) -> float:
    """Median over ``reps`` batches of ``n`` calls of the cost of one call, in µs."""
    samples = []
    step = 0
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            call(step)
            step += 1
        samples.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(samples)


def end_to_end(setups: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Median seconds per step of each setup, rounds interleaved so that drift hits them all alike."""
    times: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(rounds):
        for name, run in setups.items():
            times[name].append(run())
    return {name: statistics.median(values) for name, values in times.items()}


def row(
    framework: str, logger: str, call_us: float | None, step_s: float | None, base_s: float | None
) -> None:
    call = f"{call_us:.1f}" if call_us is not None else "–"
    if step_s is None or base_s is None:
        ROWS.append(f"| {framework} | {logger} | {call} | – | – | – |")
        return
    added = (step_s - base_s) * 1e6
    share = 100 * added / (base_s * 1e6)
    ROWS.append(f"| {framework} | {logger} | {call} | {step_s * 1e6:.0f} | {added:+.0f} | {share:+.1f}% |")


@contextlib.contextmanager
def quiet() -> Any:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


class HookClock:
    """Time spent inside a logger's methods while a real training calls them (outermost calls only,
    so a hook that calls another is counted once), and the CPU time of mini_mlflow's writer thread.

    The wall-time difference between two trainings is noise-bound at a fraction of a percent on a
    shared machine; this measures only what the logger itself costs, in the training it serves.
    """

    LOGGER_METHODS = (
        "log_metrics",
        "log_hyperparams",
        "log_graph",
        "save",
        "finalize",
        "after_save_checkpoint",
    )

    def __init__(self, probe: Callable[[], float] | None = None, steps: int = 0) -> None:
        self.ns: dict[str, int] = {}  # method → ns spent in its outermost calls
        self.first: dict[str, int] = {}  # method → ns of its first call (a lazy start: the run's creation)
        self.calls: dict[str, int] = {}
        self._depth = 0
        # ``probe`` (the writer thread's CPU seconds) is read after the log_metrics call a tenth of the
        # way in and after the last one: what it rose by between them, per step, is the steady cost;
        # the rest (files opened by the first pass, the run's start and end) is paid once per training.
        self._probe = probe
        self._marks = (max(1, steps // 10), steps) if probe is not None else ()
        self.probed: dict[int, float] = {}

    def split(self, steps: int) -> tuple[float, float]:
        """``(µs per step in the methods called at every step, their first calls left out; ms in the
        rest: those first calls, and the methods called less often, such as the run's start and end)``."""
        every = sum(ns - self.first[name] for name, ns in self.ns.items() if self.calls[name] >= steps)
        return every / 1e3 / steps, (sum(self.ns.values()) - every) / 1e6

    def split_probe(self, total_s: float) -> tuple[float, float]:
        """``(µs per step of the probe's steady rise, ms of it paid once)`` given its whole rise."""
        first, last = self._marks
        if first not in self.probed or last not in self.probed or last <= first:
            return total_s * 1e6 / max(last, 1), 0.0
        per_step = (self.probed[last] - self.probed[first]) / (last - first)
        return per_step * 1e6, max(0.0, total_s - per_step * last) * 1e3

    def wrap(self, obj: Any, names: Any) -> Any:
        for name in names:
            method = getattr(obj, name, None)
            if callable(method):
                setattr(obj, name, self._timed(name, method))
        return obj

    def wrap_callback(self, callback: Any) -> Any:
        """Time the hooks ``callback``'s own classes define (the framework's empty defaults are free)."""
        names = {
            name
            for cls in type(callback).__mro__
            if cls.__module__.startswith("mini_mlflow")
            for name in vars(cls)
            if not name.startswith("_") and callable(vars(cls)[name])
        }
        return self.wrap(callback, sorted(names))

    def _timed(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            t0 = time.perf_counter_ns()
            try:
                return method(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    took = time.perf_counter_ns() - t0
                    self.first.setdefault(name, took)
                    self.ns[name] = self.ns.get(name, 0) + took
                    self.calls[name] = calls = self.calls.get(name, 0) + 1
                    if name == "log_metrics" and calls in self._marks and self._probe is not None:
                        self.probed[calls] = self._probe()  # outside the timed call

        return timed


def writer_cpu_s() -> float:
    """CPU seconds used so far by mini_mlflow's writer thread (0 if it has not started)."""
    import threading

    for thread in threading.enumerate():
        if thread.name == "mini-mlflow-writer" and thread.ident is not None:
            try:
                return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            except (OSError, AttributeError):
                return 0.0
    return 0.0


IN_TRAINING: list[str] = []
INSTRUCTIONS: list[str] = []


# -- Lightning -------------------------------------------------------------------------------------


def bench_lightning(quick: bool, tmp: str) -> None:
    if not have("torch", "lightning"):
        return
    from lightning.pytorch import Trainer
    from lightning.pytorch.demos.boring_classes import BoringModel
    from lightning.pytorch.loggers import CSVLogger

    from mini_mlflow.integrations.lightning import MiniMlflowLogger

    steps = 300 if quick else 2000
    rounds = 3 if quick else 5

    class Model(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            out = super().training_step(batch, batch_idx)
            self.log("train_loss", out["loss"])
            return out

    def make_loggers() -> dict[str, Callable[[], Any]]:
        from lightning.pytorch.loggers.logger import Logger

        class NullLogger(Logger):  # Lightning's own cost of having a logger at all
            name, version = "null", 0

            def log_metrics(self, metrics: Any, step: Any = None) -> None:
                pass

            def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
                pass

        made: dict[str, Callable[[], Any]] = {
            "no logger": lambda: False,
            "a logger that does nothing": NullLogger,
            "mini_mlflow": lambda: MiniMlflowLogger(runs_dir=os.path.join(tmp, "mm")),
            "CSVLogger": lambda: CSVLogger(os.path.join(tmp, "csv")),
        }
        try:
            from lightning.pytorch.loggers import MLFlowLogger

            importlib.import_module("mlflow")
            made["MLFlowLogger"] = lambda: MLFlowLogger(tracking_uri="file:" + os.path.join(tmp, "mlflow"))
        except Exception:
            NOT_MEASURED.append("MLFlowLogger (mlflow not installed)")
        try:
            from dvclive.lightning import DVCLiveLogger

            made["DVCLiveLogger"] = lambda: DVCLiveLogger(
                dir=os.path.join(tmp, f"dvc{time.time_ns()}"), save_dvc_exp=False
            )
        except Exception:
            NOT_MEASURED.append("DVCLiveLogger (dvclive not installed)")
        return made

    loggers = make_loggers()

    def fit(make: Callable[[], Any]) -> Callable[[], float]:
        def run() -> float:
            logger = make()
            callback = getattr(logger, "callback", None)  # ours: resume state kept in checkpoints
            trainer = Trainer(
                max_steps=steps,
                logger=logger,
                callbacks=[callback] if callback is not None else [],
                log_every_n_steps=1,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                accelerator="cpu",
            )
            model = Model()
            with quiet():
                t0 = time.perf_counter()
                trainer.fit(model)
                took = time.perf_counter() - t0
            return took / steps

        return run

    log(f"lightning: {steps} steps x {rounds} rounds x {len(loggers)} loggers")
    medians = end_to_end({name: fit(make) for name, make in loggers.items()}, rounds)
    for name, make in loggers.items():
        call = None
        if name != "no logger":
            logger = make()
            metrics = {"train_loss": 0.5, "epoch": 0}

            def one(step: int, logger: Any = logger, metrics: dict[str, float] = metrics) -> None:
                logger.log_metrics(metrics, step=step)
                logger.save()

            with quiet():
                call = per_call_us(one, 200 if quick else 1000)
                with contextlib.suppress(Exception):
                    logger.finalize("success")
        row("Lightning (BoringModel)", name, call, medians[name], medians["no logger"])

    # In training: the time each logger's own methods take as Lightning calls them, per step, against
    # the step time of no logger (median of the rounds above); ours adds its writer thread's CPU time.
    # A logger that comes with a callback also costs Lightning's dispatch of every callback hook at
    # every batch (a profiler context each): the time in that dispatch beyond the do-nothing logger's
    # (which has no callback) is counted too.
    from lightning.pytorch.trainer import call as lightning_call

    dispatched = {"ns": 0}
    dispatch = lightning_call._call_callback_hooks

    def timed_dispatch(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter_ns()
        try:
            return dispatch(*args, **kwargs)
        finally:
            dispatched["ns"] += time.perf_counter_ns() - t0

    lightning_call._call_callback_hooks = timed_dispatch
    base_us = medians["no logger"] * 1e6
    dispatch_base_us = 0.0
    for name, make in loggers.items():
        if name == "no logger":
            continue
        shares = []
        dispatch_us = []
        for _ in range(rounds):
            dispatched["ns"] = 0
            clock = HookClock(writer_cpu_s, steps) if name == "mini_mlflow" else HookClock()

            def made(make: Callable[[], Any] = make, clock: HookClock = clock) -> Any:
                logger = clock.wrap(make(), HookClock.LOGGER_METHODS)
                callback = getattr(logger, "callback", None)
                if callback is not None:
                    clock.wrap_callback(callback)
                return logger

            cpu0 = writer_cpu_s()
            fit(made)()
            writer_us, writer_once_ms = (
                clock.split_probe(writer_cpu_s() - cpu0) if name == "mini_mlflow" else (0, 0)
            )
            hooks_us, once_ms = clock.split(steps)
            shares.append((hooks_us, once_ms + writer_once_ms, writer_us))
            dispatch_us.append(dispatched["ns"] / 1e3 / steps)
        if name == "a logger that does nothing":
            dispatch_base_us = statistics.median(dispatch_us)
        with_callback = name == "mini_mlflow"  # the only logger here that comes with a callback
        extra_us = statistics.median(dispatch_us) - dispatch_base_us if with_callback else 0.0
        hooks_us = statistics.median(h for h, _, _ in shares)
        once_ms = statistics.median(o for _, o, _ in shares)
        writer_us = statistics.median(w for _, _, w in shares)
        total = hooks_us + extra_us + writer_us
        writer = f"{writer_us:.1f}" if name == "mini_mlflow" else "–"
        extra = f"{extra_us:.1f}" if with_callback else "–"
        share = 100 * total / base_us
        IN_TRAINING.append(
            f"| Lightning (BoringModel) | {name} | {hooks_us:.1f} | {extra} | {writer} | {total:.1f} "
            f"| {share:.2f}% | {once_ms:.1f} |"
        )
    lightning_call._call_callback_hooks = dispatch
    lightning_instructions(quick, tmp)


# The same BoringModel training for the instruction counts, in a child run under callgrind.
FIT_CHILD = """
import logging, os, sys, tempfile, time, warnings
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
from lightning.pytorch import Trainer
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers.logger import Logger

class Model(BoringModel):
    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("train_loss", out["loss"])
        return out

class NullLogger(Logger):
    name, version = "null", 0
    def log_metrics(self, metrics, step=None): pass
    def log_hyperparams(self, params, *args, **kwargs): pass

which, steps, tmp = sys.argv[1], int(sys.argv[2]), tempfile.mkdtemp()
logger, callbacks = False, []
if which == "null":
    logger = NullLogger()
elif which == "ours":
    from mini_mlflow.integrations.lightning import MiniMlflowLogger
    logger = MiniMlflowLogger(runs_dir=os.path.join(tmp, "mm"))
    callbacks = [logger.callback]
trainer = Trainer(max_steps=steps, logger=logger, callbacks=callbacks, log_every_n_steps=1,
    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    accelerator="cpu", default_root_dir=tmp)
t0 = time.perf_counter()
trainer.fit(Model())
print("fit_s", time.perf_counter() - t0)
"""


def lightning_instructions(quick: bool, tmp: str) -> None:
    """Instructions per step (callgrind: every thread, deterministic, whatever the machine's noise) of
    the training with no logger, a logger that does nothing, and ours: two trainings each (50 and 250
    steps), the difference over 200 steps. Under callgrind a step takes ~45x longer, so our flush
    interval is stretched by the same factor: the writer then passes once per as many steps as at
    full speed. Counts are work, not time: they leave out cache misses and waits for the GIL."""
    if quick or shutil.which("valgrind") is None:
        NOT_MEASURED.append("Lightning instruction counts (" + ("--quick" if quick else "no valgrind") + ")")
        return
    script = os.path.join(tmp, "fit_child.py")
    with open(script, "w") as f:
        f.write(FIT_CHILD)
    # One thread for torch: its OpenMP workers spin while they wait, and how long depends on timing, so
    # their counts would differ from run to run.
    child_env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}

    def native_step_s() -> float:
        """Seconds per step of the child with no logger at full speed (1,050 - 50 steps, median of 3)."""

        def fit_s(steps: int) -> float:
            cmd = [sys.executable, script, "none", str(steps)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=child_env, check=True).stdout
            return float(out.split("fit_s")[1].split()[0])

        return statistics.median((fit_s(1050) - fit_s(50)) / 1000 for _ in range(3))

    def counts(which: str, env: dict[str, str]) -> tuple[float, float]:
        """``(instructions per step, seconds per step under callgrind)``."""
        procs = {}
        for steps in (50, 250):
            out = os.path.join(tmp, f"callgrind-{which}-{steps}.out")
            cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, script]
            procs[steps] = (out, subprocess.Popen(
                [*cmd, which, str(steps)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                env={**child_env, **env},
            ))  # fmt: skip
        got = {}
        for steps, (out, proc) in procs.items():
            stdout, _ = proc.communicate()
            fit_s = float(stdout.split("fit_s")[1].split()[0])
            with open(out) as f:
                total = next(int(line.split()[1]) for line in f if line.startswith("summary:"))
            got[steps] = (total, fit_s)
        return (got[250][0] - got[50][0]) / 200, (got[250][1] - got[50][1]) / 200

    log("lightning: instruction counts under callgrind (about 15 minutes) ...")
    native = native_step_s()
    none, slow_step_s = counts("none", {})
    stretch = slow_step_s / native
    null, _ = counts("null", {})
    ours, _ = counts("ours", {"MINI_MLFLOW_FLUSH_INTERVAL": f"{0.1 * stretch:.2f}"})
    for name, value, against in (
        ("no logger", none, None),
        ("a logger that does nothing", null, None),
        ("mini_mlflow", ours, null),
    ):
        added = value - none
        mine = "–" if against is None else f"{value - against:+,.0f} ({100 * (value - against) / none:+.2f}%)"
        share = f"{100 * added / none:+.2f}%"
        INSTRUCTIONS.append(
            f"| Lightning (BoringModel) | {name} | {value:,.0f} | {added:+,.0f} | {share} | {mine} |"
        )
    INSTRUCTIONS.append(
        f"\n(callgrind ran a step {stretch:.0f}x slower; our flush interval was stretched as much.)"
    )


# -- Transformers, Keras, Optuna: the hook as the framework calls it ---------------------------------


def bench_transformers(quick: bool, tmp: str) -> None:
    if not have("torch", "transformers"):
        return
    from transformers import TrainerControl, TrainerState

    from mini_mlflow.integrations.transformers import MiniMlflowCallback

    state, control = TrainerState(), TrainerControl()
    state.is_world_process_zero = True
    logs = {"loss": 0.5, "grad_norm": 1.2, "learning_rate": 1e-4, "epoch": 0.1}
    ours = MiniMlflowCallback(runs_dir=os.path.join(tmp, "hf"))

    class Args:
        run_name = None
        output_dir = tmp

    ours._open(Args())

    def call(step: int) -> None:
        state.global_step = step
        ours.on_log(Args(), state, control, logs=dict(logs))

    row(
        "Transformers (on_log, logging_steps=1)",
        "mini_mlflow",
        per_call_us(call, 200 if quick else 2000),
        None,
        None,
    )
    assert ours.run is not None
    ours.run.end()
    try:
        import mlflow
        from transformers.integrations import MLflowCallback

        mlflow.set_tracking_uri("file:" + os.path.join(tmp, "hf-mlflow"))
        theirs = MLflowCallback()
        theirs._initialized = True
        theirs._ml_flow = mlflow
        theirs._async_log = True
        mlflow.start_run()

        def peer(step: int) -> None:
            state.global_step = step
            theirs.on_log(Args(), state, control, logs=dict(logs))

        row(
            "Transformers (on_log, logging_steps=1)",
            "MLflowCallback",
            per_call_us(peer, 50 if quick else 200),
            None,
            None,
        )
        mlflow.end_run()
    except Exception as exc:
        NOT_MEASURED.append(f"transformers MLflowCallback ({type(exc).__name__})")


def bench_keras(quick: bool, tmp: str) -> None:
    if not have("torch", "keras"):
        return
    import keras
    import numpy as np

    from mini_mlflow.integrations.keras import MiniMlflowCallback

    x = np.random.default_rng(0).normal(size=(4096, 8)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    epochs = 1 if quick else 3
    steps = epochs * (4096 // 32)
    # One run for every round, opened outside the timing: what is measured is the per-batch cost.
    shared_run = mm.Run(runs_dir=os.path.join(tmp, "keras"))

    def fit(callbacks: Callable[[], list[Any]]) -> Callable[[], float]:
        def run() -> float:
            t0 = time.perf_counter()
            model.fit(x, y, epochs=epochs, batch_size=32, callbacks=callbacks(), verbose=0)
            return (time.perf_counter() - t0) / steps

        return run

    medians = end_to_end(
        {
            "no callback": fit(lambda: []),
            "mini_mlflow": fit(lambda: [MiniMlflowCallback(shared_run)]),
        },
        3 if quick else 5,
    )
    row(
        "Keras 3, torch backend (per batch)",
        "mini_mlflow",
        None,
        medians["mini_mlflow"],
        medians["no callback"],
    )
    shared_run.end()


def bench_boosting(quick: bool, tmp: str) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 10))
    y = x[:, 0] * 2 + rng.normal(size=2000)
    rounds = 50 if quick else 200
    # One run for every round, opened outside the timing (a run's start and end, fsync included, are
    # a few ms: amortised over a short training they would dwarf the per-round cost measured here).
    shared_run = mm.Run(runs_dir=os.path.join(tmp, "boosting"))
    if have("xgboost"):
        import xgboost as xgb

        from mini_mlflow.integrations.xgboost import MiniMlflowCallback

        data = xgb.DMatrix(x, label=y)

        def train(callbacks: Callable[[], list[Any]]) -> Callable[[], float]:
            def run() -> float:
                t0 = time.perf_counter()
                xgb.train(
                    {"max_depth": 3},
                    data,
                    rounds,
                    evals=[(data, "train")],
                    callbacks=callbacks(),
                    verbose_eval=False,
                )
                return (time.perf_counter() - t0) / rounds

            return run

        medians = end_to_end(
            {
                "none": train(lambda: []),
                "ours": train(lambda: [MiniMlflowCallback(shared_run)]),
            },
            3 if quick else 5,
        )
        callback = MiniMlflowCallback(shared_run)
        evals_log = {"train": {"rmse": [0.5]}, "valid": {"rmse": [0.6]}}
        call = per_call_us(lambda i: callback.after_iteration(None, i, evals_log), 1000 if quick else 10000)
        row("XGBoost (per round)", "mini_mlflow", call, medians["ours"], medians["none"])
    if have("lightgbm"):
        import lightgbm as lgb

        from mini_mlflow.integrations.lightgbm import mini_mlflow_callback

        def train_lgb(callbacks: Callable[[], list[Any]]) -> Callable[[], float]:
            def run() -> float:
                data = lgb.Dataset(x, label=y)
                t0 = time.perf_counter()
                lgb.train({"verbose": -1}, data, rounds, valid_sets=[data], callbacks=callbacks())
                return (time.perf_counter() - t0) / rounds

            return run

        medians = end_to_end(
            {
                "none": train_lgb(lambda: []),
                "ours": train_lgb(lambda: [mini_mlflow_callback(shared_run)]),
            },
            3 if quick else 5,
        )
        from types import SimpleNamespace

        lgb_callback = mini_mlflow_callback(shared_run)
        results = [("training", "l2", 0.5, False), ("valid_0", "l2", 0.6, False)]

        def one(i: int) -> None:
            lgb_callback(
                SimpleNamespace(
                    iteration=i + 1,
                    begin_iteration=0,
                    end_iteration=10**9,
                    params={},
                    evaluation_result_list=results,
                )
            )

        row(
            "LightGBM (per round)",
            "mini_mlflow",
            per_call_us(one, 1000 if quick else 10000),
            medians["ours"],
            medians["none"],
        )
    shared_run.end()


def bench_optuna(quick: bool, tmp: str) -> None:
    if not have("optuna"):
        return
    import optuna

    from mini_mlflow.integrations.optuna import MiniMlflowCallback

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    trials = 50 if quick else 200

    def study(callbacks: Callable[[], list[Any]]) -> Callable[[], float]:
        def run() -> float:
            s = optuna.create_study()
            t0 = time.perf_counter()
            s.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=trials, callbacks=callbacks())
            return (time.perf_counter() - t0) / trials

        return run

    medians = end_to_end(
        {
            "none": study(lambda: []),
            "ours": study(lambda: [MiniMlflowCallback(runs_dir=os.path.join(tmp, "optuna"))]),
        },
        3,
    )
    row("Optuna (per trial: a child run each)", "mini_mlflow", None, medians["ours"], medians["none"])


def bench_system_metrics(quick: bool, tmp: str) -> str:
    from mini_mlflow.write._system_metrics import start_system_metrics

    samples = 20 if quick else 100
    with mm.Run(runs_dir=os.path.join(tmp, "sys")) as run:
        handle = start_system_metrics(run, 0.01)
        while handle.samples < samples:
            time.sleep(0.01)
        handle.stop()
    per_sample = handle.cpu_seconds / handle.samples
    share = per_sample / 10.0  # the default interval
    gpus = handle.sampler.gpu_count if handle.sampler else 0
    return (
        f"System metrics: {per_sample * 1e6:.0f} µs of CPU per sample ({handle.samples} samples, "
        f"{gpus} GPUs), i.e. {share * 100:.4f}% of one core at the default 10 s interval "
        "(target: at most 0.1%)."
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-integrations-") as tmp:
        os.chdir(tmp)  # DVCLive writes dvc.yaml and .dvc/ into the working folder, Lightning lightning_logs/
        for part in (bench_lightning, bench_transformers, bench_keras, bench_boosting, bench_optuna):
            log(f"== {part.__name__}")
            try:
                part(args.quick, tmp)
            except Exception as exc:  # one framework's trouble must not lose the others' numbers
                NOT_MEASURED.append(f"{part.__name__} failed: {type(exc).__name__}: {exc}")
        system = bench_system_metrics(args.quick, tmp)
    print("## Framework integrations\n")
    print(
        "µs per call: the hook as the framework calls it (Lightning: `log_metrics` then `save`). Per step: "
        "median wall time of the same training with each logger, rounds interleaved; added: against no "
        "logger (at this size the noise between rounds is of the same order as small differences).\n"
    )
    print("| framework | logger | µs per call | µs per step | added µs per step | added |")
    print("|---|---|---|---|---|---|")
    for line in ROWS:
        print(line)
    print()
    print(
        "In training (Lightning): µs per step spent inside each logger's own methods that Lightning "
        "calls at every step (for ours, with the `Trainer(callbacks=[logger.callback])` hooks), median of "
        "the rounds (their first call left out: ours creates its run in it); ours adds the CPU time of its "
        "writer thread per step (formatting and writing every point, heartbeats), and the time Lightning "
        "spends dispatching hooks to its callback (its dispatch time beyond the do-nothing logger's, which "
        "has no callback). The share is of the step "
        "with no logger. Once per training: those first calls and the methods called less often than every "
        "step (the run's end with its flush and fsync), in ms, and for ours the writer's CPU beyond its "
        "steady rate (measured between the tenth and the last step: the first pass opens the files). "
        "This is the logger's own cost, free of the noise between whole trainings (Lightning's cost of "
        'having any logger is the row "a logger that does nothing" above).\n'
    )
    print(
        "| framework | logger | µs per step in its hooks | its callback in Lightning's dispatch "
        "| writer thread CPU µs per step | total µs per step | share of a step | once per training, ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for line in IN_TRAINING:
        print(line)
    print()
    if INSTRUCTIONS:
        print(
            "Instructions per step (Lightning), counted by callgrind over every thread of the process: "
            "the work each setup adds to a step against no logger, free of the machine's noise (but not "
            "of cache misses or waits for the GIL, which counts leave out). Lightning's own cost of having "
            'a logger at all is the row "a logger that does nothing"; the last column is what ours adds '
            "beyond it.\n"
        )
        print("| framework | logger | instructions per step | added | added | beyond a do-nothing logger |")
        print("|---|---|---|---|---|---|")
        for line in INSTRUCTIONS:
            print(line)
        print()
    print(system)
    if NOT_MEASURED:
        print("\nNot measured here: " + "; ".join(sorted(set(NOT_MEASURED))) + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
