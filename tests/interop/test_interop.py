"""scripts/interop.sh from pytest.

The Python client runs here: it needs nothing beyond the project's virtualenv and takes a few
seconds. The other languages install Debian / npm packages and take a minute or more; CI runs
them all with ``scripts/interop.sh`` after ``make test`` (see .ci/run).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "interop.sh"

pytestmark = pytest.mark.integration


def _run(langs: list[str], work: Path, timeout: float) -> str:
    env = dict(os.environ, INTEROP_WORK=str(work), PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", str(SCRIPT), *langs],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    out = proc.stdout
    summary = re.findall(r"^(\d+) passed, (\d+) failed$", out, re.MULTILINE)
    assert summary, f"no summary line\n{out}\n{proc.stderr[-3000:]}"
    passed, failed = map(int, summary[-1])
    fails = "\n".join(line for line in out.splitlines() if line.startswith("FAIL "))
    assert proc.returncode == 0 and failed == 0 and passed > 0, f"{fails}\n{proc.stderr[-3000:]}"
    return out


def test_python_client(tmp_path: Path) -> None:
    out = _run(["python"], tmp_path, timeout=120)
    assert "PASS python cancel cancels upstream" in out
