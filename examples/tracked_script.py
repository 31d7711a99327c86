"""A plain training script made into a tracked run by `mini-mlflow run`; it also runs on its own.

    mini-mlflow run -e tracked -p lr=0.01 -p layers=[64,32] -- examples/tracked_script.py --epochs 3

The command creates the run, hands it to this script (its `start_run()` joins that run instead of
starting a new one; `-p` values arrive typed through `get_or_create_ctx(...).get_param`), shows and
keeps stdout/stderr as artifacts, records command, working folder, git commit, Python and host, and
marks the run FINISHED, FAILED (non-zero exit) or KILLED (Ctrl-C) from how the script ended.
"""

from __future__ import annotations

import argparse
import math
import sys

import mini_mlflow as mm


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with mm.start_run() as run:
        params = mm.get_or_create_ctx("train")  # joins the active run
        lr = params.get_param("lr", 0.1)
        layers = params.get_param("layers", [32])
        mm.log_param("epochs", args.epochs)
        print(f"training {layers} with lr={lr} for {args.epochs} epochs (run {run.run_id})")
        for epoch in range(args.epochs):
            loss = math.exp(-lr * (epoch + 1) * 10)
            mm.log_metric("loss", loss, step=epoch)
            print(f"epoch {epoch}: loss {loss:.4f}")
        if loss > 0.99:
            print("loss did not go down", file=sys.stderr)
            sys.exit(2)  # a non-zero exit: `mini-mlflow run` records FAILED and exits with 2


if __name__ == "__main__":
    main()
