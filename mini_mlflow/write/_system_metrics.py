"""Write path: system metrics (CPU, memory, disk, network, NVIDIA GPUs) sampled into a run on a daemon thread.

``start_system_metrics(run, interval)`` starts one named daemon thread that, every ``interval``
seconds, reads the machine's counters and logs them through the run's normal buffered path as
``system/...`` metrics (MLflow's names), at step = sample number. Only global rank 0 samples (one
set of system metrics per run under DDP). On Linux everything comes from ``/proc`` and ``statvfs``
(no dependency); elsewhere from ``psutil`` when installed. GPUs come from NVML through ``pynvml``
(the ``gpu`` extra: ``nvidia-ml-py``) when it and a driver are there; without them there are no GPU
metrics and no error. A failing read warns once per cause and never stops the training loop.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._rank import global_rank

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["SystemMetricsHandle", "SystemSampler", "start_system_metrics"]

_MB = 1024 * 1024


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode("ascii", "replace")


class SystemSampler:
    """Reads the machine's counters; each ``sample()`` returns ``{"system/...": value}``.

    Args:
        disk_path: A path on the disk whose usage is reported (the run's folder).
        nvml: The NVML binding to use: ``pynvml`` by default (None: look for it). Tests pass a fake.
        proc: Folder of the proc file system (``/proc``); a folder without one means "not Linux".
    """

    def __init__(self, disk_path: str = "/", nvml: Any = None, proc: str = "/proc") -> None:
        self.disk_path = disk_path
        self.proc = proc
        self._linux = os.path.isfile(os.path.join(proc, "stat"))
        self._psutil: Any = None
        if not self._linux:
            try:
                import psutil

                self._psutil = psutil
            except ImportError:
                pass
        self._cpu_last: tuple[int, int] | None = None
        self._net_start: tuple[int, int] | None = None
        self._nvml: Any = None
        self._gpus: list[Any] = []
        self._unsupported: set[tuple[int, str]] = set()
        self.problems: dict[str, str] = {}
        self._open_nvml(nvml)

    # -- GPUs ------------------------------------------------------------------------------------

    def _open_nvml(self, nvml: Any) -> None:
        if nvml is None:
            try:
                import pynvml
            except ImportError:
                return
            nvml = pynvml
        try:
            nvml.nvmlInit()
        except Exception:  # no driver, no GPU: no GPU metrics (that is not an error)
            return
        try:
            self._gpus = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        except Exception as exc:
            self.problems["gpu"] = f"{type(exc).__name__}: {exc}"
            self._gpus = []
        self._nvml = nvml

    @property
    def gpu_count(self) -> int:
        return len(self._gpus)

    def close(self) -> None:
        """Release NVML (once)."""
        nvml, self._nvml = self._nvml, None
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except Exception:  # shutting down a library that is already gone: nothing to release
                return

    def _gpu_query(self, index: int, what: str, query: Callable[..., Any], *args: Any) -> Any:
        if (index, what) in self._unsupported:
            return None
        try:
            return query(*args)
        except Exception:  # e.g. NVMLError_NotSupported: power on some boards; never asked again
            self._unsupported.add((index, what))
            return None

    def _gpu_metrics(self, out: dict[str, float]) -> None:
        nvml = self._nvml
        if nvml is None:
            return
        sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
        for i, handle in enumerate(self._gpus):
            head = f"system/gpu_{i}_"
            rates = self._gpu_query(i, "utilization", nvml.nvmlDeviceGetUtilizationRates, handle)
            if rates is not None:
                out[head + "utilization_percentage"] = float(rates.gpu)
            memory = self._gpu_query(i, "memory", nvml.nvmlDeviceGetMemoryInfo, handle)
            if memory is not None and memory.total:
                out[head + "memory_usage_megabytes"] = memory.used / _MB
                out[head + "memory_usage_percentage"] = 100.0 * memory.used / memory.total
            power = self._gpu_query(i, "power", nvml.nvmlDeviceGetPowerUsage, handle)
            if power is not None:
                out[head + "power_usage_watts"] = power / 1000.0
                limit = self._gpu_query(i, "power_limit", nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
                if limit:
                    out[head + "power_usage_percentage"] = 100.0 * power / limit
            temperature = self._gpu_query(i, "temperature", nvml.nvmlDeviceGetTemperature, handle, sensor)
            if temperature is not None:
                out[head + "temperature_celsius"] = float(temperature)

    # -- the machine -----------------------------------------------------------------------------

    def _cpu(self, out: dict[str, float]) -> None:
        if self._linux:
            fields = _read(os.path.join(self.proc, "stat")).split("\n", 1)[0].split()[1:]
            ticks = [int(v) for v in fields[:8]]
            idle, total = ticks[3] + (ticks[4] if len(ticks) > 4 else 0), sum(ticks)
            last, self._cpu_last = self._cpu_last, (idle, total)
            if last is not None and total > last[1]:
                out["system/cpu_utilization_percentage"] = 100.0 * (1 - (idle - last[0]) / (total - last[1]))
        elif self._psutil is not None:
            out["system/cpu_utilization_percentage"] = float(self._psutil.cpu_percent(interval=None))

    def _memory(self, out: dict[str, float]) -> None:
        if self._linux:
            info = {}
            for line in _read(os.path.join(self.proc, "meminfo")).splitlines():
                name, _, rest = line.partition(":")
                if name in ("MemTotal", "MemAvailable"):
                    info[name] = int(rest.split()[0]) * 1024
            total, available = info.get("MemTotal"), info.get("MemAvailable")
        elif self._psutil is not None:
            memory = self._psutil.virtual_memory()
            total, available = memory.total, memory.available
        else:
            return
        if total and available is not None:
            out["system/system_memory_usage_megabytes"] = (total - available) / _MB
            out["system/system_memory_usage_percentage"] = 100.0 * (total - available) / total

    def _disk(self, out: dict[str, float]) -> None:
        stat = os.statvfs(self.disk_path)
        total = stat.f_blocks * stat.f_frsize
        free = stat.f_bavail * stat.f_frsize
        used = total - stat.f_bfree * stat.f_frsize
        out["system/disk_usage_megabytes"] = used / _MB
        out["system/disk_available_megabytes"] = free / _MB
        if total:
            out["system/disk_usage_percentage"] = 100.0 * used / total

    def _network(self, out: dict[str, float]) -> None:
        if self._linux:
            received = sent = 0
            for line in _read(os.path.join(self.proc, "net", "dev")).splitlines()[2:]:
                name, _, counters = line.partition(":")
                if name.strip() == "lo":
                    continue
                values = counters.split()
                received += int(values[0])
                sent += int(values[8])
        elif self._psutil is not None:
            counters_all = self._psutil.net_io_counters()
            received, sent = counters_all.bytes_recv, counters_all.bytes_sent
        else:
            return
        if self._net_start is None:
            self._net_start = (received, sent)
        # Since sampling started, as MLflow reports them.
        out["system/network_receive_megabytes"] = (received - self._net_start[0]) / _MB
        out["system/network_transmit_megabytes"] = (sent - self._net_start[1]) / _MB

    def sample(self) -> dict[str, float]:
        """One sample of every counter that can be read; a part that fails is left out (see ``problems``)."""
        out: dict[str, float] = {}
        for name, part in (
            ("cpu", self._cpu),
            ("memory", self._memory),
            ("disk", self._disk),
            ("network", self._network),
            ("gpu", self._gpu_metrics),
        ):
            try:
                part(out)
            except Exception as exc:
                self.problems[name] = f"{type(exc).__name__}: {exc}"
        return out


class SystemMetricsHandle:
    """The sampling thread of one run: ``stop()`` ends it (idempotent; also ends with the run)."""

    def __init__(self, run: Run | None, interval: float, sampler: SystemSampler | None) -> None:
        self.run = run
        self.interval = interval
        self.sampler = sampler
        #: Samples logged so far (the step of the next one).
        self.samples = 0
        #: CPU seconds this thread has spent sampling and logging (``time.thread_time``).
        self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._warned: set[str] = set()
        self._thread: threading.Thread | None = None
        if run is not None and sampler is not None:
            self._thread = threading.Thread(
                target=self._loop, name=f"mini-mlflow-system-metrics-{run.run_id[:8]}", daemon=True
            )
            self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the sampling thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def thread_name(self) -> str:
        return self._thread.name if self._thread is not None else ""

    def _loop(self) -> None:
        run, sampler = self.run, self.sampler
        assert run is not None and sampler is not None
        try:
            sampler.sample()  # primes the CPU and network counters: the first logged sample has deltas
            while not self._stop.wait(self.interval) and run.status == "RUNNING":
                started = time.thread_time()
                values = sampler.sample()
                self._warn_problems(sampler)
                if values:
                    try:
                        run.log_metrics(values, step=self.samples)
                    except Exception as exc:
                        # The run may be ending on another thread right now (Run.end closes its key
                        # set before it sets the status): wait for end() to finish, then look again.
                        with run._end_lock:
                            ending = run.status != "RUNNING"
                        if not ending:
                            self._warn("logging", f"{type(exc).__name__}: {exc}")
                        break
                self.samples += 1
                self.cpu_seconds += time.thread_time() - started
        finally:
            sampler.close()

    def _warn_problems(self, sampler: SystemSampler) -> None:
        for part, problem in list(sampler.problems.items()):
            self._warn(part, problem)

    def _warn(self, part: str, problem: str) -> None:
        if part in self._warned:
            return
        self._warned.add(part)
        warnings.warn(
            f"mini_mlflow system metrics: cannot read {part} ({problem}); the other metrics go on",
            RuntimeWarning,
            stacklevel=1,
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling and wait (at most ``timeout`` s) for the thread to end."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                warnings.warn(
                    f"mini_mlflow system metrics: the sampling thread did not stop within {timeout} s",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def __enter__(self) -> SystemMetricsHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_system_metrics(
    run: Run, interval: float | None = None, *, sampler: SystemSampler | None = None
) -> SystemMetricsHandle:
    """Sample system metrics into ``run`` every ``interval`` seconds until ``stop()`` or the run ends.

    Args:
        run: The run to log to.
        interval: Seconds between samples; default the run's ``system_metrics_interval`` setting
            (``MINI_MLFLOW_SYSTEM_METRICS_INTERVAL``, 10 s).
        sampler: What reads the counters; default a ``SystemSampler`` for the run's disk.

    Returns:
        The sampling thread's handle. On a process whose global rank is not 0 nothing is sampled
        and the handle's ``running`` is False.
    """
    if interval is None:
        interval = run._settings.system_metrics_interval
    from .._config import MAX_SECONDS, MIN_SECONDS
    from .._errors import InvalidInputError

    if not isinstance(interval, (int, float)) or not MIN_SECONDS <= interval <= MAX_SECONDS:
        raise InvalidInputError(
            f"system metrics interval must be a number of seconds from {MIN_SECONDS:g} to {MAX_SECONDS:g}, "
            f"got {interval!r}"
        )
    if global_rank() != 0:
        return SystemMetricsHandle(None, float(interval), None)
    return SystemMetricsHandle(run, float(interval), sampler or SystemSampler(disk_path=run.run_dir))
