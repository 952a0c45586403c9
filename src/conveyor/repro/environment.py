"""What a run's results depend on besides code: interpreter, packages, threads, host.

Everything here is cheap enough to run on every ``conveyor run`` and uses the
standard library only (threadpoolctl runs inside the child, see bootstrap).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    # importlib.metadata costs tens of milliseconds to import; it is loaded in
    # capture_packages, which the recorder calls while the command already runs.
    from importlib import metadata

    from conveyor.store.blobs import BlobStore

__all__ = [
    "THREAD_VARIABLES",
    "Package",
    "capture_host",
    "capture_packages",
    "host_facts",
    "pinned_thread_env",
    "recorded_env_variables",
    "stored_packages",
]

#: Variables that set how many threads the numeric libraries use.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
#: Prefixes of other variables that change numeric results (kernel choice, cache sizes).
_RESULT_VARIABLE_PREFIXES = ("OPENBLAS_", "MKL_", "OMP_", "KMP_", "BLIS_", "NUMEXPR_")

Package = dict[str, str]  # {"name", "version"} plus "url" for a local or VCS install


def pinned_thread_env(environ: Mapping[str, str], threads: int | None) -> dict[str, str]:
    """Thread variables for the child: ``threads`` if given, else what is set, else all cores."""
    if threads is not None:
        return dict.fromkeys(THREAD_VARIABLES, str(threads))
    default = environ.get("OMP_NUM_THREADS") or str(os.cpu_count() or 1)
    return {name: environ.get(name) or default for name in THREAD_VARIABLES}


def recorded_env_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that influence numeric results, as the child sees them."""
    return {k: v for k, v in sorted(environ.items()) if k.startswith(_RESULT_VARIABLE_PREFIXES)}


def _cpu() -> dict[str, Any]:
    info: dict[str, Any] = {"count": os.cpu_count(), "machine": platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        info["model"] = platform.processor() or "unknown"
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and "model" not in info:
            info["model"] = value.strip()
        elif key in ("flags", "Features") and "flags" not in info:
            info["flags"] = sorted(value.split())
        if "model" in info and "flags" in info:
            break
    return info


def capture_host() -> dict[str, Any]:
    """Host facts: name, OS, CPU model and flags."""
    uname = platform.uname()
    return {
        "hostname": os.uname().nodename,
        "os": {"system": uname.system, "release": uname.release, "version": uname.version},
        "libc": "-".join(platform.libc_ver()) or None,
        "cpu": _cpu(),
    }


_HOST: dict[str, Any] = {}


def host_facts() -> dict[str, Any]:
    """:func:`capture_host`, taken once per process (a platform records many steps)."""
    if not _HOST:
        _HOST.update(capture_host())
    copy: dict[str, Any] = json.loads(json.dumps(_HOST))  # records change theirs
    return copy


def _direct_url(dist: metadata.Distribution) -> str | None:
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    url = data.get("url")
    if not isinstance(url, str):
        return None
    if "vcs_info" in data:
        vcs = data["vcs_info"]
        return f"{vcs.get('vcs', 'git')}+{url}@{vcs.get('commit_id', '')}"
    if url.startswith("file://"):
        return "file://" + unquote(urlparse(url).path)
    return url


def _name_and_version(dist: metadata.Distribution) -> tuple[str | None, str]:
    """A distribution's Name and Version, read from the head of its metadata file.

    ``dist.metadata`` parses the whole file (long descriptions included) with the
    email parser, and ``dist.version`` parses it again: for a few hundred
    distributions that was most of a run's recording overhead. Name and Version
    are single-line headers before the first blank line (core metadata spec);
    anything unexpected falls back to the full parser.
    """
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if text:
        found: dict[str, str] = {}
        for line in text.splitlines():
            if not line:
                break
            field, sep, value = line.partition(":")
            field = field.lower()
            if sep and field in ("name", "version") and field not in found:
                found[field] = value.strip()
                if len(found) == 2:
                    return found["name"], found["version"]
    meta = dist.metadata
    return meta["Name"], meta["Version"]


def capture_packages(paths: Iterable[str] | None = None) -> list[Package]:
    """Every distribution visible on ``paths`` (default: this interpreter's sys.path).

    Sorted by normalised name; the first of duplicate names wins, as import would.
    """
    from importlib import metadata

    seen: dict[str, Package] = {}
    search = list(paths) if paths is not None else sys.path
    for dist in metadata.distributions(path=[p for p in search if p]):
        name, version = _name_and_version(dist)
        if not name:
            continue
        key = name.lower().replace("_", "-").replace(".", "-")
        if key in seen:
            continue
        pkg: Package = {"name": name, "version": version}
        url = _direct_url(dist)
        if url and not url.startswith(("https://", "http://")):
            pkg["url"] = url
        seen[key] = pkg
    return [seen[k] for k in sorted(seen)]


#: Package sets already stored, by search path: (the folders' change times, digest, count).
_PACKAGE_SETS: dict[tuple[str, ...], tuple[tuple[int, ...], str, int]] = {}


def _stamp(paths: Iterable[str]) -> tuple[int, ...]:
    stamps = []
    for path in paths:
        try:
            stamps.append(os.stat(path).st_mtime_ns)
        except OSError:
            stamps.append(-1)
    return tuple(stamps)


def stored_packages(paths: Iterable[str], store: BlobStore) -> tuple[str, int]:
    """The package set on ``paths``, stored as JSON: its digest and how many packages.

    Listed once per search path and process: installing or removing a
    distribution adds or removes its ``.dist-info`` folder, which changes the
    folder's modification time, and that makes the next call list it again.
    A platform recording many steps of one droplet pays for the listing once.
    """
    key = tuple(p for p in paths if p)
    stamp = _stamp(key)
    known = _PACKAGE_SETS.get(key)
    if known is not None and known[0] == stamp and store.exists(known[1]):
        return known[1], known[2]
    packages = capture_packages(key)
    digest = store.put_json(packages)
    _PACKAGE_SETS[key] = (stamp, digest, len(packages))
    return digest, len(packages)


def interpreter_facts() -> dict[str, Any]:
    """The running interpreter (used when the child is not Python)."""
    return {
        "executable": sys.executable,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "prefix": sys.prefix,
        "path": [p for p in sys.path if p],
    }
