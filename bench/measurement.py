"""Run one command and measure it: wall time, memory of its process tree, CPU.

Memory is sampled every ``interval_s`` (50 ms) over the command's process and
all its descendants (ffmpeg included). The figure the benchmarks report,
``peak_rss_mb``, is the larger of the peak of their summed RSS and the main
process's own high-water mark (VmHWM), which catches a spike that fell
between two samples. The sum of every process's high-water mark,
``hwm_sum_mb``, is an upper bound on the true peak.

The machine is shared, so every run also records how many cores the rest of
the machine kept busy meanwhile: system busy time less the command's own CPU
time, divided by the wall time.
"""

from __future__ import annotations

import os
import re
import resource
import statistics
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

MIB = 1024 * 1024
_STATUS_KB = re.compile(r"^(VmRSS|VmHWM):\s+(\d+) kB", re.MULTILINE)


@dataclass(frozen=True)
class Measurement:
    """What one run of a command cost."""

    returncode: int
    wall_s: float
    peak_rss_mb: float
    sampled_peak_mb: float
    hwm_sum_mb: float
    main_hwm_mb: float
    cpu_s: float
    others_cores: float
    load_before: float
    samples: int
    median_rss_mb: float = 0.0
    # The processes of the sample with the largest sum: "name:pid" -> MiB.
    peak_parts: dict[str, float] = field(default_factory=dict)
    # When that sample was taken, in seconds after the command started.
    peak_at_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TreeSampler(threading.Thread):
    """Sums the RSS of a process and its descendants until stopped.

    ``totals_kb`` keeps every sample's sum, for medians and timelines.
    """

    def __init__(self, pid: int, interval_s: float) -> None:
        super().__init__(daemon=True)
        self._root = psutil.Process(pid)
        self._interval_s = interval_s
        self._stop_event = threading.Event()
        self.peak_kb = 0
        self.hwm_kb: dict[int, int] = {}
        self.totals_kb: list[int] = []
        self.peak_parts: dict[str, float] = {}
        self.peak_at_s = 0.0
        self.samples = 0
        self._began = time.monotonic()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._sample()
            self._stop_event.wait(self._interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def _sample(self) -> None:
        try:
            pids = [self._root.pid] + [c.pid for c in self._root.children(True)]
        except psutil.Error:
            return
        total = 0
        parts: dict[str, float] = {}
        for pid in pids:
            rss, hwm = _status_kb(pid)
            total += rss
            self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), hwm)
            name = f"{_command_name(pid)}:{pid}"
            parts[name] = round(rss / 1024, 1)
        if total > self.peak_kb:
            self.peak_kb, self.peak_parts = total, parts
            self.peak_at_s = time.monotonic() - self._began
        self.totals_kb.append(total)
        self.samples += 1

    def median_mb(self) -> float:
        """The median of the summed RSS over the samples so far, in MiB."""
        return statistics.median(self.totals_kb) / 1024 if self.totals_kb else 0.0


def _status_kb(pid: int) -> tuple[int, int]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    found = dict(_STATUS_KB.findall(text))
    return int(found.get("VmRSS", 0)), int(found.get("VmHWM", 0))


def _command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def run_measured(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    interval_s: float = 0.05,
    timeout_s: float | None = None,
) -> Measurement:
    """Run ``cmd`` to its end (stdout and stderr to ``log_path``) and measure it."""
    load_before = os.getloadavg()[0]
    busy_before = _busy_seconds()
    cpu_before = _children_cpu_seconds()
    sink = log_path.open("wb") if log_path else subprocess.DEVNULL
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        sampler = TreeSampler(proc.pid, interval_s)
        sampler.start()
        try:
            returncode = proc.wait(timeout=timeout_s)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            sampler.stop()
    finally:
        if log_path:
            sink.close()  # type: ignore[union-attr]
    wall_s = time.monotonic() - started

    cpu_s = _children_cpu_seconds() - cpu_before
    others = max(0.0, _busy_seconds() - busy_before - cpu_s) / wall_s
    main_hwm_kb = sampler.hwm_kb.get(proc.pid, 0)
    return Measurement(
        returncode=returncode,
        wall_s=wall_s,
        # The main process's own high-water mark bounds the tree's true peak
        # from below even when a spike fell between two samples.
        peak_rss_mb=max(sampler.peak_kb, main_hwm_kb) / 1024,
        sampled_peak_mb=sampler.peak_kb / 1024,
        hwm_sum_mb=sum(sampler.hwm_kb.values()) / 1024,
        main_hwm_mb=main_hwm_kb / 1024,
        cpu_s=cpu_s,
        others_cores=others,
        load_before=load_before,
        samples=sampler.samples,
        median_rss_mb=sampler.median_mb(),
        peak_parts=sampler.peak_parts,
        peak_at_s=sampler.peak_at_s,
    )


def _busy_seconds() -> float:
    # guest time is already inside user time; idle and iowait are not busy.
    times = psutil.cpu_times()._asdict()
    spare = ("idle", "iowait", "guest", "guest_nice")
    return sum(v for k, v in times.items() if k not in spare)


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine() -> dict[str, Any]:
    """What the runs ran on, for the report."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "kernel": os.uname().release,
    }
