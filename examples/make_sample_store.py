"""Build ``mlruns.sample/``: a small, deterministic store to try the CLI on right after install.

    python examples/make_sample_store.py [OUT]      # default: mlruns.sample next to this repo's README
    mini-mlflow --root mlruns.sample ls --all

Three experiments, twelve runs with realistic training curves, written through the public API; one run
diverges and FAILS, and one is killed mid-training (SIGKILL, no chance to clean up), so it stays RUNNING
with a dead heartbeat: the CLI shows it as crashed. Times and ids are fixed so the output is stable.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import mini_mlflow as mm  # noqa: E402
from mini_mlflow.store import _experiments, _operations  # noqa: E402
from mini_mlflow.store._layout import iso_from_ms  # noqa: E402

T0 = 1763625600000  # 2025-11-20T08:00:00Z
MARKER = ".gitignore"
rng = random.Random(20251120)


def run_id() -> str:
    return uuid.UUID(int=rng.getrandbits(128), version=4).hex


def fix_meta(run: mm.Run, start: int, end: int | None) -> None:
    """Pin times, user and source so the sample is identical on every machine."""
    _operations.update_run_meta(
        run.run_dir,
        start_time=iso_from_ms(start),
        end_time=iso_from_ms(end),
        user="alice",
        source={"name": "train.py", "git_commit": "3f9c2d1e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d"},
    )


def train_curve(
    epochs: int, lr: float, quality: float, noise: float, adaptive: bool = False
) -> list[tuple[float, float, float]]:
    """(train/loss, val/loss, val/acc) per epoch: fast early progress, a plateau, a little noise."""
    speed = min(1.0, lr * (600 if adaptive else 30))  # Adam-like optimizers need a far smaller lr
    out = []
    for epoch in range(epochs):
        progress = 1 - math.exp(-(epoch + 1) * speed / 3)
        train = 2.3 * (1 - progress) + (1 - quality) * 0.8 + rng.gauss(0, noise)
        val = train * 1.08 + 0.02 * epoch / epochs + rng.gauss(0, noise)
        acc = min(0.995, quality * progress + rng.gauss(0, noise / 3))
        out.append((max(0.01, train), max(0.01, val), max(0.0, acc)))
    return out


def mnist(root: str) -> None:
    mm.set_tracking_dir(root)
    exp = _experiments.get_or_create_experiment(root, "mnist-cnn")
    sweep = [(0.1, "sgd"), (0.03, "sgd"), (0.01, "adam"), (0.003, "adam"), (0.001, "adam")]
    start = T0
    for i, (lr, opt) in enumerate(sweep):
        run = mm.Run(run_id=run_id(), experiment_id=exp, name=f"cnn-{opt}-lr{lr}", runs_dir=root)
        run.log_params({"lr": lr, "optimizer": opt, "batch_size": 64, "epochs": 20, "dropout": 0.25})
        run.set_tags({"model": "cnn-small", "dataset": "mnist"})
        quality = {0.1: 0.975, 0.03: 0.986, 0.01: 0.992, 0.003: 0.989, 0.001: 0.981}[lr]
        for epoch, (train, val, acc) in enumerate(train_curve(20, lr, quality, 0.01, opt == "adam")):
            stamp = start + (epoch + 1) * 41_000
            run.log_metric("train/loss", train, step=epoch, timestamp=stamp)
            run.log_metric("val/loss", val, step=epoch, timestamp=stamp)
            run.log_metric("val/acc", acc, step=epoch, timestamp=stamp)
        run.log_dict({"lr": lr, "optimizer": opt, "layers": [32, 64, 128]}, "config.json")
        run.end("FINISHED")
        fix_meta(run, start, start + 20 * 41_000 + 1_500)
        start += 20 * 60_000 + i * 7_000
    # A run that diverges: the loss explodes to inf, training raises, the run is marked FAILED.
    run = mm.Run(run_id=run_id(), experiment_id=exp, name="cnn-sgd-lr1.0", runs_dir=root)
    run.log_params({"lr": 1.0, "optimizer": "sgd", "batch_size": 64, "epochs": 20, "dropout": 0.25})
    run.set_tags({"model": "cnn-small", "dataset": "mnist"})
    loss = 2.3
    for epoch in range(6):
        loss = loss * 3.7 if epoch > 1 else loss * 0.9
        value = loss if epoch < 5 else float("inf")
        stamp = start + (epoch + 1) * 41_000
        run.log_metric("train/loss", value, step=epoch, timestamp=stamp)
        run.log_metric("val/acc", max(0.0, 0.4 - 0.08 * epoch), step=epoch, timestamp=stamp)
    run.set_tag("error", "FloatingPointError: loss is inf at epoch 5")
    run.end("FAILED")
    fix_meta(run, start, start + 6 * 41_000 + 300)


def cifar(root: str) -> None:
    exp = _experiments.get_or_create_experiment(root, "cifar10-resnet")
    start = T0 + 3 * 3_600_000
    for i, (model, width, quality) in enumerate(
        [("resnet18", 64, 0.93), ("resnet18", 128, 0.945), ("resnet50", 64, 0.951)]
    ):
        run = mm.Run(run_id=run_id(), experiment_id=exp, name=f"{model}-w{width}", runs_dir=root)
        run.log_params(
            {
                "model": model,
                "width": width,
                "lr": 0.1,
                "optimizer": "sgd",
                "epochs": 60,
                "augment": "crop+flip",
            }
        )
        run.set_tags({"model": model, "gpu": "A100"})
        for epoch, (train, val, acc) in enumerate(train_curve(60, 0.02, quality, 0.006)):
            stamp = start + (epoch + 1) * 95_000
            run.log_metric("train/loss", train, step=epoch, timestamp=stamp)
            run.log_metric("val/loss", val, step=epoch, timestamp=stamp)
            run.log_metric("val/acc", acc, step=epoch, timestamp=stamp)
            run.log_metric(
                "lr", 0.1 * 0.5 * (1 + math.cos(math.pi * epoch / 60)), step=epoch, timestamp=stamp
            )
        run.log_text(f"{model}: {width} base channels\n", "model_summary.txt")
        run.end("FINISHED")
        fix_meta(run, start, start + 60 * 95_000 + 2_000)
        start += 100 * 60_000 + i * 13_000
    crashed(root, exp, start)


def crashed(root: str, exp: str, start: int) -> None:
    """A training process SIGKILLed at epoch 23 (out of memory killer): no end_run, no cleanup."""
    rid = run_id()
    points = [(e, *v) for e, v in enumerate(train_curve(23, 0.02, 0.955, 0.006))]
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {os.path.dirname(HERE)!r})
        import mini_mlflow as mm
        run = mm.Run(run_id={rid!r}, experiment_id={exp!r}, name="resnet50-w128", runs_dir={root!r})
        run.log_params({{"model": "resnet50", "width": 128, "lr": 0.1, "optimizer": "sgd", "epochs": 60,
                        "augment": "crop+flip"}})
        run.set_tags({{"model": "resnet50", "gpu": "A100"}})
        for epoch, train, val, acc in {points!r}:
            stamp = {start} + (epoch + 1) * 160_000
            run.log_metric("train/loss", train, step=epoch, timestamp=stamp)
            run.log_metric("val/acc", acc, step=epoch, timestamp=stamp)
        run.flush()
        print("ready", flush=True)
        import time
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGKILL)
    child.wait()
    rdir = os.path.join(root, exp, rid)
    for name in os.listdir(rdir):
        if name.startswith(".heartbeat-"):  # the dead writer's last beat, pinned to the sample's clock
            os.remove(os.path.join(rdir, name))
    with open(os.path.join(rdir, ".heartbeat-31337@gpu-node-3"), "w") as f:
        json.dump(
            {"time": start + 23 * 160_000 + 4_000, "interval": 10.0, "pid": 31337, "host": "gpu-node-3"}, f
        )
    _operations.update_run_meta(
        rdir,
        start_time=iso_from_ms(start),
        user="alice",
        source={"name": "train.py", "git_commit": "3f9c2d1e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d"},
    )


def default(root: str) -> None:
    start = T0 - 2 * 86_400_000
    for i, (name, seed_loss) in enumerate([("smoke-test", 0.9), ("smoke-test-2", 0.7)]):
        run = mm.Run(run_id=run_id(), experiment_id=0, name=name, runs_dir=root)
        run.log_params({"lr": 0.01, "steps": 50})
        for step in range(50):
            run.log_metric(
                "loss", seed_loss * math.exp(-step / 15) + 0.05, step=step, timestamp=start + step * 200
            )
        run.end("FINISHED")
        fix_meta(run, start, start + 10_300)
        start += 3_600_000 + i


def main() -> None:
    out = os.path.abspath(
        sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(HERE), "mlruns.sample")
    )
    if os.path.exists(out):
        if not os.path.exists(os.path.join(out, MARKER)):
            sys.exit(f"{out} exists and was not made by this script; refusing to replace it")
        shutil.rmtree(out)
    os.makedirs(out)
    default(out)
    mnist(out)
    cifar(out)
    for current, dirs, files in os.walk(out):  # lock files and derived indexes are not part of a sample
        for name in files:
            if name == ".lock":
                os.remove(os.path.join(current, name))
        if ".index" in dirs:
            shutil.rmtree(os.path.join(current, ".index"))
            dirs.remove(".index")
    with open(os.path.join(out, MARKER), "w") as f:
        f.write(
            "# derived and transient files of a store (the runs themselves are committed)\n.index/\n.lock\n"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
