"""One line describing the machine a benchmark ran on, for its results file and the README."""

import os
import platform
from pathlib import Path


def describe_machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return f"{os.cpu_count()} x {cpu} ({platform.machine()}), Python {platform.python_version()}"
