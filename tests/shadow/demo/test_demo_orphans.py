"""A SIGKILLed ``shadow demo`` leaves none of its processes behind (Linux: they die with it)."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

DEMO = [sys.executable, "-m", "shadow", "demo"]


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _started(out: Path) -> dict[int, str]:
    """Every process the demo recorded in DIR/logs/pids.txt: pid → name."""
    lines = (out / "logs" / "pids.txt").read_text().splitlines()
    return {int(pid): name for pid, name in (line.split() for line in lines if line.strip())}


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_a_sigkilled_demo_takes_every_child_with_it(tmp_path: Path) -> None:
    """Once the servers and the sidecar run, `kill -9` of the demo leaves none of them alive."""
    out = tmp_path / "demo"
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    with subprocess.Popen(
        [*DEMO, "--out", str(out), "--requests", "300", "--embedder", "lexical"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        stdout = proc.stdout

        def read_lines() -> None:
            for line in stdout:
                lines.put(line)

        reader = threading.Thread(target=read_lines, daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        try:
            # "driving" is printed once the broker, both mock-llm servers and the sidecar answer.
            while not any("driving 300 requests" in line for line in seen):
                assert proc.poll() is None, "".join(seen)
                seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
            started = _started(out)
            assert {"broker", "broker/child", "baseline", "candidate", "capture"} <= set(
                started.values()
            )
            assert all(_alive(pid) for pid in started)
            proc.kill()
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(10)
    started = _started(out)  # and whatever it started after the first read
    deadline = time.monotonic() + 15
    while (left := {pid: name for pid, name in started.items() if _alive(pid)}) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)  # polling an observable state, bounded above
    assert left == {}, f"survived the demo: {left}"
