"""Start-up hook of every Python process inside ``conveyor run`` (standard library only).

``conveyor run`` puts this folder first on PYTHONPATH, so Python imports this
module before the user's code. When CONVEYOR_RUN_DIR is set it:

- seeds ``random`` with the run seed, and seeds NumPy's global generator,
  NumPy's ``default_rng()`` without a seed, and torch, each as soon as it is
  imported (so a script that never imports NumPy pays nothing);
- writes the interpreter's facts (executable, version, sys.path) to the run
  journal, from which the recorder reads the exact package set;
- at exit, records the BLAS/OpenMP libraries actually loaded (threadpoolctl);
- watches the files the process opens inside the project folder
  (CONVEYOR_WATCH_ROOT, an audit hook on ``open``) and journals the first read
  and the first write of each, so the recorder can name undeclared inputs and
  tell whose process wrote an output;
- then runs any other ``sitecustomize`` the environment had.
"""

from __future__ import annotations

import atexit
import importlib.machinery
import itertools
import math
import os
import sys
import time
from _json import encode_basestring_ascii  # the C half of json: no import of re

TYPE_CHECKING = False  # mypy treats this name as true; importing typing costs ~6 ms

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import ModuleType
    from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
#: sys.implementation.name -> what platform.python_implementation() says.
_IMPLEMENTATIONS = {"cpython": "CPython", "pypy": "PyPy", "graalpy": "GraalVM"}


def _encode(value: Any) -> str:
    """Compact JSON for the few shapes events hold (``import json`` costs ~15 ms here)."""
    if isinstance(value, str):
        return str(encode_basestring_ascii(value))
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "null"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_encode(str(k))}:{_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return _encode(str(value))


def _journal(run_dir: str, kind: str, **fields: Any) -> None:
    event = {"type": kind, "time": time.time(), **fields}
    line = (_encode(event) + "\n").encode()
    try:
        fd = os.open(
            os.path.join(run_dir, "journal.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
        )
    except OSError:
        return
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class _AfterImport:
    """Runs a hook right after a named module finishes importing (a meta path finder).

    Not derived from importlib.abc.MetaPathFinder: importing that module costs
    ~30 ms in every Python process of a run, and the import system only needs
    ``find_spec``.
    """

    def __init__(self, hooks: dict[str, Callable[[ModuleType], None]]) -> None:
        self.hooks = hooks

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        hook = self.hooks.get(fullname)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        del self.hooks[fullname]
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            try:
                hook(module)
            except Exception as exc:  # a seeding failure must not break the user's import
                sys.stderr.write(f"conveyor: could not seed {fullname}: {exc}\n")

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _seed_numpy_random(seed: int) -> Callable[[ModuleType], None]:
    def hook(mod: ModuleType) -> None:
        mod.seed(seed % 2**32)
        original = mod.default_rng
        counter = itertools.count()

        def default_rng(seed_arg: Any = None) -> Any:
            if seed_arg is None:
                # Each unseeded generator gets its own stream, in creation order.
                seed_arg = mod.SeedSequence(seed, spawn_key=(next(counter),))
            return original(seed_arg)

        default_rng.__doc__ = original.__doc__
        mod.default_rng = default_rng  # type: ignore[attr-defined]

    return hook


def _seed_torch(seed: int) -> Callable[[ModuleType], None]:
    def hook(mod: ModuleType) -> None:
        mod.manual_seed(seed)

    return hook


def _record_blas(run_dir: str) -> None:
    if "numpy" not in sys.modules and "scipy" not in sys.modules and "torch" not in sys.modules:
        return
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return
    libs = [
        {
            k: info.get(k)
            for k in ("user_api", "internal_api", "version", "num_threads", "architecture")
        }
        for info in threadpool_info()
    ]
    _journal(run_dir, "blas", libraries=libs)


def _chain_other_sitecustomize() -> None:
    """Import the sitecustomize this one shadows, if the environment has one."""
    others = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is None or spec.loader is None:
        return
    from importlib.util import module_from_spec

    module = module_from_spec(spec)
    sys.modules["_conveyor_chained_sitecustomize"] = module
    spec.loader.exec_module(module)


#: Paths inside the project that are tools' own files, not the run's data.
_NOT_DATA = (
    os.sep + "__pycache__" + os.sep,
    os.sep + ".git" + os.sep,
    os.sep + ".venv" + os.sep,
    os.sep + "site-packages" + os.sep,
    os.sep + "node_modules" + os.sep,
)
_WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _conveyor_home() -> str:
    home = os.environ.get("CONVEYOR_HOME")
    return os.path.realpath(home) if home else ""


def _watch_files(run_dir: str, root: str) -> None:
    """Journal the first read and first write of each file opened under ``root``.

    Every ``open`` (builtin, ``os.open``, imports) raises an audit event; the
    hook must stay cheap because it sees all of them, so it rejects anything
    outside the project with one string comparison.
    """
    prefix = root.rstrip(os.sep) + os.sep
    own = tuple(
        p.rstrip(os.sep) + os.sep
        for p in {sys.prefix, sys.base_prefix, os.path.realpath(run_dir), _conveyor_home()}
        if p and (p.rstrip(os.sep) + os.sep).startswith(prefix)
    )
    seen: set[tuple[str, bool]] = set()
    abspath, fspath = os.path.abspath, os.fspath

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event != "open":
            return
        path = args[0]
        if not isinstance(path, str):
            if isinstance(path, int):
                return  # an already open descriptor
            try:
                path = os.fsdecode(fspath(path))
            except TypeError:
                return
        if not path.startswith(prefix):
            path = abspath(path)  # relative to a cwd that may change later
            if not path.startswith(prefix):
                return
        writing = bool(args[2] & _WRITING) if isinstance(args[2], int) else False
        key = (path, writing)
        if key in seen or path.endswith(".pyc") or any(n in path for n in _NOT_DATA):
            return
        if own and path.startswith(own):
            return
        seen.add(key)
        # An exception here would fail the user's own open(); contextlib is not imported
        # for this, as it would be in every Python process of every run.
        try:  # noqa: SIM105
            _journal(run_dir, "write" if writing else "read", path=path)
        except (OSError, ValueError):
            pass

    sys.addaudithook(hook)


def _first_python_of_run(run_dir: str) -> bool:
    """True for the first Python process of the run (the command, or what it started)."""
    try:
        fd = os.open(os.path.join(run_dir, "interpreter.claim"), os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return False
    os.close(fd)
    return True


def _main() -> None:
    run_dir = os.environ.get("CONVEYOR_RUN_DIR")
    seed_text = os.environ.get("CONVEYOR_RUN_SEED")
    if run_dir and seed_text:
        seed = int(seed_text)
        import random

        random.seed(seed)
        sys.meta_path.insert(
            0,
            _AfterImport({"numpy.random": _seed_numpy_random(seed), "torch": _seed_torch(seed)}),
        )
        root = os.environ.get("CONVEYOR_WATCH_ROOT")
        if root:
            _watch_files(run_dir, root)
        if _first_python_of_run(run_dir):
            _journal(
                run_dir,
                "interpreter",
                executable=sys.executable,
                python="{}.{}.{}".format(*sys.version_info[:3]),
                implementation=_IMPLEMENTATIONS.get(
                    sys.implementation.name, sys.implementation.name
                ),
                prefix=sys.prefix,
                path=[p for p in sys.path if p and os.path.abspath(p) != _HERE],
                watching=root or None,
            )
            atexit.register(_record_blas, run_dir)
    _chain_other_sitecustomize()


_main()
