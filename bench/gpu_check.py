"""Proves the system-metrics GPU path on a machine with an NVIDIA GPU (the test suite can only fake NVML).

Run it there, from the repository root, in an environment with the ``gpu`` extra (``nvidia-ml-py``):

    pip install -e '.[gpu]' && python bench/gpu_check.py [--seconds 6] [--json report.json]

It samples every 0.25 s into a fresh run in a temporary store while the GPU is idle, then (with
torch and CUDA present) while it multiplies matrices, and compares the logged values with
``nvidia-smi``'s own reading. It prints what it found and exits 1 if a GPU metric is missing or out of
range, 2 if this machine has no usable GPU (nothing was proved).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mini_mlflow as mm
from mini_mlflow.write._system_metrics import SystemSampler, start_system_metrics

KINDS = (
    "utilization_percentage",
    "memory_usage_megabytes",
    "memory_usage_percentage",
    "power_usage_watts",
    "temperature_celsius",
)


def _smi() -> list[dict[str, float]]:
    """nvidia-smi's reading of every GPU (empty without nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return []
    fields = "utilization.gpu,memory.used,memory.total,power.draw,temperature.gpu"
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    rows = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        values = [float(p) if p.replace(".", "", 1).isdigit() else float("nan") for p in parts]
        rows.append(dict(zip(["util", "mem_used", "mem_total", "power", "temp"], values, strict=False)))
    return rows


def _load_gpu(stop: threading.Event) -> str:
    """Keep GPU 0 busy with matrix products until ``stop`` (torch with CUDA), else say why not."""
    try:
        import torch
    except ImportError:
        return "torch not installed: the GPU stays idle"
    if not torch.cuda.is_available():
        return "torch has no CUDA: the GPU stays idle"
    a = torch.randn(4096, 4096, device="cuda")
    while not stop.is_set():
        (a @ a).sum().item()
    return "matrix products on cuda:0"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    sampler = SystemSampler()
    report: dict[str, object] = {"gpus_seen_by_nvml": sampler.gpu_count, "problems": dict(sampler.problems)}
    if sampler.gpu_count == 0:
        print(json.dumps({**report, "verdict": "no GPU through NVML: nothing proved"}, indent=2))
        sampler.close()
        return 2
    root = tempfile.mkdtemp(prefix="gpu-check-")
    smi_before = _smi()
    with mm.Run(runs_dir=root, name="gpu-check") as run:
        handle = start_system_metrics(run, 0.25, sampler=sampler)
        time.sleep(args.seconds / 2)  # idle half
        stop = threading.Event()
        load_result: list[str] = []
        worker = threading.Thread(target=lambda: load_result.append(_load_gpu(stop)))
        worker.start()
        time.sleep(args.seconds / 2)  # busy half
        smi_busy = _smi()
        stop.set()
        worker.join()
        handle.stop()
    store = mm.Store(root)
    metrics = store.get_run(run.run_id)["metrics"]
    failures = []
    per_gpu = {}
    for i in range(sampler.gpu_count):
        got = {kind: metrics.get(f"system/gpu_{i}_{kind}") for kind in KINDS}
        per_gpu[i] = got
        for kind, value in got.items():
            if value is None:
                failures.append(f"gpu {i}: no {kind}")
        checks = {
            "utilization_percentage": (0, 100),
            "memory_usage_percentage": (0, 100),
            "temperature_celsius": (5, 110),
            "power_usage_watts": (1, 2000),
        }
        for kind, (low, high) in checks.items():
            value = got.get(kind)
            if value is not None and not low <= value <= high:
                failures.append(f"gpu {i}: {kind} = {value} outside [{low}, {high}]")
    utilization = store.get_metric_history(run.run_id, "system/gpu_0_utilization_percentage")
    report.update(
        {
            "samples": handle.samples,
            "sampler_cpu_seconds": round(handle.cpu_seconds, 4),
            "sampler_cpu_share_of_a_core": handle.cpu_seconds / max(args.seconds, 1e-9),
            "load": load_result[0] if load_result else "",
            "last_values": per_gpu,
            "gpu0_utilization_series": list(zip(utilization.steps, utilization.values, strict=True)),
            "nvidia_smi_idle": smi_before,
            "nvidia_smi_busy": smi_busy,
            "failures": failures,
            "verdict": "GPU metrics OK on a real GPU" if not failures else "FAILED",
        }
    )
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
