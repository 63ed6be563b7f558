"""What machine a benchmark ran on (shared by every benchmark's JSON and Markdown output)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np


def machine_info(**libraries: str | int | None) -> dict:
    """CPU model and count, platform, Python/NumPy versions and load; ``libraries`` are added as given."""
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"platform": platform.platform(), "cpu_model": model, "cpu_count": os.cpu_count(),
            "usable_cpus": usable, "python": platform.python_version(), "numpy": np.__version__, **libraries,
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
