"""What the machine has: CPU, RAM, GPU memory (when a GPU tool reports it)."""

from __future__ import annotations

import platform
import shutil
import subprocess
from dataclasses import dataclass


@dataclass
class Hardware:
    cpu: str
    physical_cores: int
    logical_cores: int
    ram_total: int
    ram_available: int
    gpu_name: str | None
    gpu_memory: int | None  # bytes, discrete GPUs only (Apple silicon shares RAM)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return platform.processor() or platform.machine()


def _nvidia() -> tuple[str | None, int | None]:
    if not shutil.which("nvidia-smi"):
        return None, None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    if not line:
        return None, None
    name, _, mem = line.rpartition(",")
    try:
        return name.strip(), int(float(mem)) * 2**20
    except ValueError:
        return name.strip() or None, None


def detect_hardware() -> Hardware:
    import psutil

    vm = psutil.virtual_memory()
    gpu_name, gpu_mem = _nvidia()
    if gpu_name is None and platform.system() == "Darwin" and platform.machine() == "arm64":
        gpu_name = "Apple silicon (unified memory)"
    return Hardware(
        cpu=_cpu_name(),
        physical_cores=psutil.cpu_count(logical=False) or 1,
        logical_cores=psutil.cpu_count() or 1,
        ram_total=vm.total,
        ram_available=vm.available,
        gpu_name=gpu_name,
        gpu_memory=gpu_mem,
    )
