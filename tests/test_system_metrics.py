"""System metrics: a daemon thread samples this machine's real counters into the run, rank 0 only."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import mini_mlflow as mm
from mini_mlflow import Run
from mini_mlflow.write._system_metrics import SystemSampler, start_system_metrics

from conftest import wait_until

MACHINE_KEYS = {
    "system/cpu_utilization_percentage",
    "system/system_memory_usage_megabytes",
    "system/system_memory_usage_percentage",
    "system/disk_usage_megabytes",
    "system/disk_available_megabytes",
    "system/disk_usage_percentage",
    "system/network_receive_megabytes",
    "system/network_transmit_megabytes",
}


def _history(root: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    found = mm.Store(root).get_metric_history(run_id, key)
    return list(zip(found.steps, found.values))


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="reads Linux's /proc")
def test_the_real_machine_is_sampled_every_interval_until_stop(store: Path) -> None:
    with Run(runs_dir=store) as run:
        handle = start_system_metrics(run, 0.02)
        assert handle.running and handle.thread_name.startswith("mini-mlflow-system-metrics-")
        wait_until(lambda: handle.samples >= 3)
        handle.stop()
        assert not handle.running
        samples = handle.samples
    metrics = mm.Store(store).get_run(run.run_id)["metrics"]
    # No GPU on this machine: no GPU metric, and no error about it.
    assert set(metrics) == MACHINE_KEYS
    cpu = _history(store, run.run_id, "system/cpu_utilization_percentage")
    assert [step for step, _ in cpu] == list(range(samples))  # step = sample number, none after stop
    assert all(0.0 <= value <= 100.0 for _, value in cpu)
    assert 0 < metrics["system/system_memory_usage_megabytes"]
    assert 0 < metrics["system/system_memory_usage_percentage"] <= 100
    assert metrics["system/disk_available_megabytes"] > 0
    assert 0 < metrics["system/disk_usage_percentage"] <= 100
    assert metrics["system/network_receive_megabytes"] >= 0


def test_sampling_ends_with_the_run(store: Path) -> None:
    run = Run(runs_dir=store)
    handle = start_system_metrics(run, 0.01)
    wait_until(lambda: handle.samples >= 1)
    run.end()
    wait_until(lambda: not handle.running)
    handle.stop()  # a second stop (after the thread ended by itself) does nothing


def test_only_global_rank_zero_samples(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    with Run(runs_dir=store) as run:
        handle = start_system_metrics(run, 0.01)
        assert not handle.running
        handle.stop()
    assert mm.Store(store).get_run(run.run_id)["metrics"] == {}


def test_the_interval_comes_from_the_setting_and_a_bad_one_is_refused(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINI_MLFLOW_SYSTEM_METRICS_INTERVAL", "2.5")
    with Run(runs_dir=store) as run:
        handle = start_system_metrics(run)
        assert handle.interval == 2.5
        handle.stop()
        for bad in (0, -1, float("nan"), "10"):
            with pytest.raises(mm.InvalidInputError, match="number of seconds from 0.001 to 86400"):
                start_system_metrics(run, bad)  # type: ignore[arg-type]
    monkeypatch.setenv("MINI_MLFLOW_SYSTEM_METRICS", "sometimes")
    with pytest.raises(mm.InvalidInputError, match="MINI_MLFLOW_SYSTEM_METRICS='sometimes'.*true or false"):
        Run(runs_dir=store)
    monkeypatch.setenv("MINI_MLFLOW_SYSTEM_METRICS", "yes")
    from mini_mlflow._config import resolve

    assert resolve().system_metrics is True and mm.Settings().system_metrics is False


def test_a_part_that_cannot_be_read_warns_once_and_the_others_go_on(store: Path) -> None:
    sampler = SystemSampler(disk_path=str(store / "no-such-folder"))
    with Run(runs_dir=store) as run, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        handle = start_system_metrics(run, 0.01, sampler=sampler)
        wait_until(lambda: handle.samples >= 3)
        handle.stop()
    texts = [str(w.message) for w in caught if "system metrics" in str(w.message)]
    assert len(texts) == 1 and "cannot read disk (FileNotFoundError" in texts[0]
    metrics = mm.Store(store).get_run(run.run_id)["metrics"]
    assert "system/system_memory_usage_megabytes" in metrics and "system/disk_usage_megabytes" not in metrics


# -- parsing: a /proc folder written by the test, so that every value is known exactly ---------------


def _proc(folder: Path, cpu: list[int], received: int, sent: int) -> None:
    (folder / "net").mkdir(parents=True, exist_ok=True)
    (folder / "stat").write_text("cpu  " + " ".join(map(str, cpu)) + "\ncpu0 1 2 3 4\n")
    (folder / "meminfo").write_text("MemTotal: 8000000 kB\nMemFree: 100 kB\nMemAvailable: 2000000 kB\n")
    (folder / "net" / "dev").write_text(
        "Inter-|   Receive\n face |bytes packets\n"
        f"    lo: 999999 1 0 0 0 0 0 0 999999 1 0 0 0 0 0 0\n"
        f"  eth0: {received} 10 0 0 0 0 0 0 {sent} 10 0 0 0 0 0 0\n"
    )


def test_proc_counters_become_the_documented_metrics(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    _proc(proc, [100, 0, 100, 800, 0, 0, 0, 0], 1 << 20, 0)
    sampler = SystemSampler(disk_path=str(tmp_path), nvml=_NoNvml(), proc=str(proc))
    first = sampler.sample()
    assert "system/cpu_utilization_percentage" not in first  # a rate needs two readings
    _proc(proc, [250, 0, 150, 900, 0, 0, 0, 0], 4 << 20, 3 << 20)  # 200 busy ticks of 300
    second = sampler.sample()
    assert second["system/cpu_utilization_percentage"] == pytest.approx(100 * 200 / 300)
    assert second["system/system_memory_usage_megabytes"] == pytest.approx(6000000 / 1024)
    assert second["system/system_memory_usage_percentage"] == pytest.approx(75.0)
    assert second["system/network_receive_megabytes"] == 3.0  # since the first sample; lo left out
    assert second["system/network_transmit_megabytes"] == 3.0


# -- GPUs: NVML cannot run without an NVIDIA driver, which this machine lacks -----------------------


def test_without_a_driver_the_real_nvml_binding_gives_no_gpu_metrics_and_no_error(tmp_path: Path) -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver: bench/gpu_check.py covers the real path")
    sampler = SystemSampler(disk_path=str(tmp_path))
    assert sampler.gpu_count == 0
    assert not any("gpu" in key for key in sampler.sample()) and sampler.problems == {}


class _NoNvml:
    """An NVML whose init fails as the real one does without a driver."""

    def nvmlInit(self) -> None:
        raise OSError("NVML Shared Library Not Found")


class FakeNvml:
    """A FAKE NVML, standing in for pynvml because this machine has no NVIDIA GPU or driver: it answers
    the calls the sampler makes with fixed values, and refuses power on GPU 1 as boards without a power
    sensor do. The real binding on a real GPU is checked by bench/gpu_check.py on a GPU machine."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.shutdowns = 0
        self.lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def nvmlInit(self) -> None:
        self._count("init")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=37 + handle, memory=10)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(total=4 << 30, used=(1 + handle) << 30, free=0)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        self._count(f"power{handle}")
        if handle == 1:
            raise RuntimeError("NVMLError_NotSupported")
        return 150_000  # milliwatts

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        return 300_000

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return 65 + handle


def test_gpu_values_map_to_per_gpu_metrics_with_fake_nvml(store: Path) -> None:
    nvml = FakeNvml()
    sampler = SystemSampler(disk_path=str(store), nvml=nvml)
    assert sampler.gpu_count == 2
    with Run(runs_dir=store) as run:
        handle = start_system_metrics(run, 0.01, sampler=sampler)
        wait_until(lambda: handle.samples >= 3)
        handle.stop()
    metrics = mm.Store(store).get_run(run.run_id)["metrics"]
    gpu = {k: v for k, v in metrics.items() if k.startswith("system/gpu_")}
    assert gpu == {
        "system/gpu_0_utilization_percentage": 37.0,
        "system/gpu_0_memory_usage_megabytes": 1024.0,
        "system/gpu_0_memory_usage_percentage": 25.0,
        "system/gpu_0_power_usage_watts": 150.0,
        "system/gpu_0_power_usage_percentage": 50.0,
        "system/gpu_0_temperature_celsius": 65.0,
        "system/gpu_1_utilization_percentage": 38.0,
        "system/gpu_1_memory_usage_megabytes": 2048.0,
        "system/gpu_1_memory_usage_percentage": 50.0,
        "system/gpu_1_temperature_celsius": 66.0,
    }
    assert nvml.calls["power1"] == 1  # an unsupported reading is not asked for again
    assert nvml.calls["power0"] >= 3
    assert nvml.shutdowns == 1


def _system_keys(run: Any) -> set[str]:
    return {
        k
        for k in mm.Store(Path(run.run_dir).parent.parent).metric_keys(run.run_id)
        if k.startswith("system/")
    }


def test_start_run_log_system_metrics_samples_and_end_stops_it(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINI_MLFLOW_SYSTEM_METRICS_INTERVAL", "0.05")
    with mm.start_run(log_system_metrics=True) as run:
        wait_until(lambda: "system/cpu_utilization_percentage" in _system_keys(run), timeout=60)
        handle = run._system_metrics
        assert handle is not None and handle.running
    assert not handle.running  # ended with the run, before its key set closed
    with mm.start_run() as plain:  # off by default
        assert plain._system_metrics is None
    mm.enable_system_metrics_logging()  # MLflow's switch: every run from now on
    try:
        with mm.start_run() as sampled:
            assert sampled._system_metrics is not None
        with mm.start_run(log_system_metrics=False) as refused:  # the argument wins
            assert refused._system_metrics is None
    finally:
        mm.disable_system_metrics_logging()
    monkeypatch.setenv("MINI_MLFLOW_SYSTEM_METRICS", "true")  # the setting, for Run() too
    direct = Run(runs_dir=store)
    assert direct._system_metrics is not None
    direct.end()
    assert not direct._system_metrics.running


def test_a_new_key_logged_while_another_thread_ends_the_run_is_a_clear_error(store: Path) -> None:
    errors: list[BaseException] = []
    for _ in range(50):
        run = Run(runs_dir=store)
        run.log_metric("warm", 1.0)
        go = threading.Event()

        def log_new_keys(run: Run = run, go: threading.Event = go) -> None:
            go.wait()
            try:
                for i in range(2000):
                    run.log_metric(f"k{i}", 1.0)
            except mm.RunEndedError:
                pass  # the promised error
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=log_new_keys)
        thread.start()
        go.set()
        run.end()
        thread.join()
    assert errors == []  # never an AttributeError from the closed key set


def test_a_run_whose_start_failed_half_way_still_ends_at_exit(tmp_path: Path) -> None:
    from conftest import python_child

    # tags are checked after the run is registered: the exit hook must find the run whole enough to end
    code = """
        import mini_mlflow as mm
        try:
            mm.Run(runs_dir="mlruns", tags={"../bad": 1})
        except mm.InvalidInputError:
            print("refused", flush=True)
    """
    child = python_child(code, tmp_path)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0 and out.strip() == "refused"
    assert "could not end run" not in err, err
