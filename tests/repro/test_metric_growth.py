"""Long metric histories under ``conveyor run``: memory flat in the steps, listings unaffected."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.repro.conftest import Cli

LOGGER = """
import sys, conveyor
for step in range(int(sys.argv[1])):
    conveyor.log_metric("loss", 1.0 / (step + 1), step=step)
conveyor.log_metric("auc", 0.75)
"""

#: Runs ``conveyor run`` and prints the peak RSS (KiB) of it and its command.
PEAK = """
import resource, subprocess, sys
subprocess.run([sys.executable, "-m", "conveyor", "run", "--", *sys.argv[1:]], check=True,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_kib(cli: Cli, steps: int) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", PEAK, "python", "logger.py", str(steps)],
        cwd=cli.project,
        env=cli.env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=280,
    )
    return int(proc.stdout.split()[-1])


@pytest.mark.slow
def test_memory_is_flat_in_the_number_of_steps(cli: Cli, write: Callable[[str, str], Path]) -> None:
    write("logger.py", LOGGER)

    small, large = _peak_kib(cli, 20_000), _peak_kib(cli, 200_000)

    # Held in memory until the end, 180,000 more steps cost about 144 MB.
    assert large - small < 30 * 1024, (small, large)
    runs = json.loads(cli("runs", "--json").stdout)
    assert [r["metrics"] for r in runs] == [
        {"auc": 0.75, "loss": 1.0 / 200_000},
        {"auc": 0.75, "loss": 1.0 / 20_000},
    ]
    shown = json.loads(cli("runs", "show", runs[0]["id"], "--json", "--points", "100").stdout)
    loss = [m for m in shown["metric_history"] if m["key"] == "loss"]
    assert 50 <= len(loss) <= 100
    assert loss[-1]["step"] == 199_999


def test_runs_page_by_cursor(cli: Cli, write: Callable[[str, str], Path]) -> None:
    write("m.py", "import conveyor, sys\nconveyor.log_metric('x', float(sys.argv[1]))\n")
    for i in range(3):
        cli("run", "--", "python", "m.py", str(i))

    first = cli("runs", "--json", "--limit", "2")
    cursor = first.stderr.split("--after ")[-1].strip()
    rest = cli("runs", "--json", "--limit", "2", "--after", cursor)
    second_page = cli("runs", "--json", "--limit", "2", "--page", "2")

    seen = [r["metrics"]["x"] for r in json.loads(first.stdout) + json.loads(rest.stdout)]
    assert seen == [2.0, 1.0, 0.0]
    assert "--after" not in rest.stderr  # the last page
    assert json.loads(second_page.stdout) == json.loads(rest.stdout)
    past = cli("runs", "--limit", "2", "--page", "3")
    assert past.stdout.strip() == "No runs on page 3: this listing has 4 runs or fewer."
    bad = cli("runs", "--after", "nonsense", check=False)
    assert bad.returncode != 0
    assert "is not a listing cursor" in bad.stderr
