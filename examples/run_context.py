"""The run context face: a job asks for its params, inputs and secrets, and reports metrics, artifacts
and final results; `to_yaml()` prints the run record.

Run it directly (`python examples/run_context.py`) or with injected values:

    ACCESS_KEY=demo mini-mlflow run -p p1=5 -i infile=examples/run_context.py -- examples/run_context.py
"""

from __future__ import annotations

import os

import mini_mlflow as mm


def my_func(ctx: mm.RunContext) -> None:
    p1 = ctx.get_param("p1", 1)  # 1 unless `mini-mlflow run -p p1=...` says otherwise; recorded either way
    p2 = ctx.get_param("p2", "a-string")
    infile = ctx.get_input("infile", __file__)
    print(f"Run: {ctx.name} (uid={ctx.uid})")
    print(f"Params: p1={p1}, p2={p2}")
    key = ctx.get_secret("ACCESS_KEY")  # from `-s secrets.env` or the environment; never stored
    print(f"Access key is {'set' if key else 'not set'}")
    size = os.path.getsize(infile) if infile and os.path.exists(infile) else 0
    ctx.log_result("accuracy", p1 * 2)  # results/accuracy.json, apart from the metric series
    ctx.log_result("input_bytes", size)
    for i in range(1, 4):
        ctx.log_metric("loss", 2 * i, i)
    ctx.log_artifact("test.txt", body=b"abc is 123")


def main() -> None:
    with mm.get_or_create_ctx("mytask", project="run-context") as ctx:
        my_func(ctx)
        print(ctx.to_yaml())


if __name__ == "__main__":
    main()
