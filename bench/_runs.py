"""Shared parts of the run benchmarks: a throw-away Conveyor home, a project, timed commands.

Every benchmark that drives ``conveyor run`` works in a temporary folder holding
a fresh CONVEYOR_HOME and a small git project with one deterministic script,
and calls the real CLI (``.venv/bin/conveyor``) as a user would.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

#: The folder holding this interpreter (.venv/bin): put first on PATH for every command.
BIN = Path(sys.executable).parent
CONVEYOR = BIN / "conveyor"

#: The script a benchmark runs: a CPU loop cut into 100 chunks, deterministic for a given N.
#: With ``--api`` it reads 10 parameters and logs one metric per chunk through Conveyor.
SCRIPT = '''\
"""Benchmark workload: a deterministic CPU loop; ``--api`` also records through Conveyor."""

import sys


def work(n: int, x: int) -> int:
    for i in range(n):
        x = (x * 31 + i) % 1000003
    return x


n = int(sys.argv[1])
api = "--api" in sys.argv
if api:
    import conveyor

    params = [conveyor.param(f"p{k}", k) for k in range(10)]
x = 0
for step in range(100):
    x = work(n // 100, x)
    if api:
        conveyor.log_metric("x", x / 1000003, step=step)
with open("result.txt", "w") as f:
    f.write(f"{x}\\n")
print(x)
'''


def machine() -> str:
    """CPU model, cores and Python version of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


@dataclass
class Workspace:
    """A temporary project and Conveyor home; ``env`` is what every command runs with."""

    root: Path
    project: Path = field(init=False)
    home: Path = field(init=False)
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.project = self.root / "project"
        self.home = self.root / "home"
        self.project.mkdir()
        env = dict(os.environ)
        # A user's Python writes bytecode caches; this machine's default environment
        # forbids it, which would recompile Conveyor on every start. Keep the caches,
        # but in the temporary folder, so nothing is left behind.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("VIRTUAL_ENV", None)
        for name in list(env):
            if name.startswith("CONVEYOR_"):
                del env[name]
        env.update(
            CONVEYOR_HOME=str(self.home),
            PYTHONPYCACHEPREFIX=str(self.root / "pycache"),
            PATH=os.pathsep.join([str(BIN), env.get("PATH", "")]),
        )
        self.env = env

    def write_project(self, files: Mapping[str, str]) -> None:
        """Write ``files`` into the project and commit them (a user's project is a git repo)."""
        for name, text in files.items():
            (self.project / name).write_text(text)
        (self.project / ".gitignore").write_text("result.txt\nmlruns/\n*.db\n")
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@127.0.0.1"]
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "benchmark project"]):
            subprocess.run([*git, *args], cwd=self.project, check=True, env=self.env)

    def run(self, command: Sequence[str], *, timeout: float = 600, capture: bool = False) -> Timed:
        """Run ``command`` in the project; wall and CPU time (children's), stdout if captured."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(
            list(command),
            cwd=self.project,
            env=self.env,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace")[-2000:]
            raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{tail}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return Timed(wall, cpu, proc.stdout.decode(errors="replace") if capture else "")

    def loop_count(self, seconds: float) -> int:
        """Iterations of the script's loop that take about ``seconds`` of CPU here.

        Measured on the children's CPU time, not wall time, so a busy machine does
        not shrink the workload; the interpreter's start-up is subtracted.
        """
        base = min(self.run(["python", "script.py", "0"]).cpu for _ in range(3))
        n = 1_000_000
        for _ in range(8):  # bounded: 4**8 times the start covers any machine
            spent = self.run(["python", "script.py", str(n)]).cpu - base
            if spent > 0.3:
                break
            n *= 4
        return max(100, int(n * seconds / max(spent, 1e-3)) // 100 * 100)


@dataclass(frozen=True)
class Timed:
    """One command's wall time and the CPU time (user + system) of its processes."""

    wall: float
    cpu: float
    stdout: str = ""


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (5 min {five:.2f})"


@contextmanager
def workspace(args: argparse.Namespace, prefix: str) -> Iterator[Workspace]:
    """Say where the benchmark runs (machine, load), then a workspace under ``args.tmpdir``."""
    print(f"machine: {machine()}", flush=True)
    print(f"load average at start: {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix=prefix, dir=args.tmpdir) as tmp:
        yield Workspace(Path(tmp))


def rounds(args: argparse.Namespace) -> Iterator[int]:
    """Round numbers up to ``args.rounds``; stops early, saying so, after ``args.max_minutes``."""
    deadline = time.monotonic() + args.max_minutes * 60
    for round_ in range(args.rounds):
        if time.monotonic() > deadline:
            print(f"time limit reached after {round_} rounds", flush=True)
            return
        yield round_


def parse_args(
    argv: Sequence[str] | None, *, prog: str, description: str, rounds: int, quick_rounds: int
) -> argparse.Namespace:
    """The options every run benchmark takes; ``--quick`` means a 0.5 s script."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--seconds", type=float, default=2.0, help="script CPU time (default 2)")
    parser.add_argument("--rounds", type=int, default=rounds, help=f"rounds (default {rounds})")
    parser.add_argument("--quick", action="store_true", help=f"0.5 s script, {quick_rounds} rounds")
    parser.add_argument("--tmpdir", type=Path, default=None, help="where to make the workspace")
    parser.add_argument(
        "--max-minutes", type=float, default=20.0, help="stop starting rounds after this long"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = 0.5, quick_rounds
    return args
