"""Reproduction environments: the recorded package set, rebuilt with uv and cached.

An environment is keyed by the digest of (Python version, exact package
list), so every run recorded with the same packages shares one, and a second
``reproduce`` finds it ready. Builds take a file lock, so two reproductions
at once build it once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from conveyor.errors import EnvironmentBuildError
from conveyor.repro.environment import Package
from conveyor.uvtool import run_uv

__all__ = ["conveyor_path_entry", "ensure_environment", "requirements_for"]

#: Distributions reproduce provides itself instead of installing.
_PROVIDED = {"conveyor"}
_READY = ".conveyor-ready"


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def requirements_for(packages: list[Package]) -> list[str]:
    """Requirement lines that re-create ``packages`` exactly (EnvironmentBuildError if not)."""
    lines: list[str] = []
    missing: list[str] = []
    for pkg in packages:
        if _norm(pkg["name"]) in _PROVIDED:
            continue
        url = pkg.get("url")
        if url is None:
            lines.append(f"{pkg['name']}=={pkg['version']}")
        elif url.startswith("file://"):
            local = Path(url.removeprefix("file://"))
            if local.exists():
                lines.append(f"{pkg['name']} @ {local.as_uri()}")
            else:
                missing.append(f"{pkg['name']} {pkg['version']} (installed from {local})")
        else:
            lines.append(f"{pkg['name']} @ {url}")
    if missing:
        raise EnvironmentBuildError(
            "the run used packages installed from local folders that no longer exist: "
            + ", ".join(missing),
            hint="Restore those folders, or re-run with --no-env to use the current interpreter.",
        )
    return sorted(lines, key=str.lower)


def _run_uv(args: list[str], what: str) -> None:
    run_uv(args, what, error=EnvironmentBuildError)


def ensure_environment(
    packages: list[Package],
    python: str,
    cache: Path,
    *,
    progress: Callable[[str], None] = lambda _msg: None,
) -> Path:
    """The folder of a virtual environment holding exactly ``packages`` on ``python``."""
    requirements = requirements_for(packages)
    key = hashlib.sha256(json.dumps([python, requirements]).encode()).hexdigest()[:20]
    target = cache / key
    if (target / _READY).exists():
        progress(f"Environment {key} is cached ({len(requirements)} packages).")
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / _READY).exists():
            return target
        progress(
            f"Creating environment {key}: Python {python}, {len(requirements)} packages (uv) ..."
        )
        # Built in place under the lock; the ready marker, written last, is what others trust.
        shutil.rmtree(target, ignore_errors=True)
        try:
            _run_uv(
                ["venv", "--quiet", "--python", python, "--no-project", str(target)],
                f"create a Python {python} environment (is Python {python} installed?)",
            )
            reqs = target / "requirements.txt"
            reqs.write_text("\n".join(requirements) + "\n")
            _run_uv(
                [
                    "pip",
                    "install",
                    "--quiet",
                    "--no-deps",
                    "--python",
                    str(target / "bin" / "python"),
                    "-r",
                    str(reqs),
                ],
                "install the recorded packages",
            )
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        (target / _READY).write_text(python + "\n")
    return target


def conveyor_path_entry(cache: Path) -> Path:
    """A folder holding only links to this ``conveyor`` package and its metadata.

    Put on a reproduction's PYTHONPATH, it makes ``import conveyor`` work in the
    re-created environment, and the package list taken there names the same
    conveyor distribution as the original's.
    """
    source = Path(__file__).resolve().parents[1]  # the conveyor package folder
    links = {"conveyor": source}
    try:
        from importlib.metadata import distribution

        dist_path = getattr(distribution("conveyor"), "_path", None)
        if isinstance(dist_path, Path) and dist_path.is_dir():
            links[dist_path.name] = dist_path.resolve()
    except ImportError:
        pass
    key = json.dumps(sorted((k, str(v)) for k, v in links.items()))
    folder = cache / f"_conveyor-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    for name, target in links.items():
        link = folder / name
        if not link.exists():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{name}-{os.getpid()}"
            tmp.symlink_to(target, target_is_directory=True)
            tmp.replace(link)
    return folder
