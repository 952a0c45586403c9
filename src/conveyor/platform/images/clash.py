"""An app's packages against the runtime image's: a different version is refused.

An app built on the runtime image installs its locked packages into the same
``/opt/conveyor/venv`` as Conveyor's own, on top of them. A package both have
at different versions would leave the app's files over Conveyor's (and two
``dist-info`` folders), which may break ``conveyor serve`` in the pod, so it is
refused before anything is pushed. The runtime image lists its packages in the
:data:`LABEL_PACKAGES` label of its config::

    check_lock("six==1.16.0\\nattrs==25.1.0\\n", {"six": "1.17.0"}, "the runtime image R")
    # ImageError: the app's requirements pin six 1.16.0, but the runtime image R it is
    # built on has six 1.17.0: ...

Packages only the app has are layered on top, and the same version passes
(``1.17`` is ``1.17.0``: PEP 440): its wheel may differ by platform or build tag
only, which the lock does not pin. A different local label (``2.1.0+cpu``
against ``2.1.0+cu121``) is another build and is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor.platform.errors import ImageError

__all__ = ["LABEL_PACKAGES", "check_lock", "labelled_packages", "lock_pins", "packages_label"]

#: The runtime image's packages, ``name==version`` (canonical names) separated by spaces.
LABEL_PACKAGES = "conveyor.packages"


def packages_label(packages: Mapping[str, str]) -> str:
    """:data:`LABEL_PACKAGES`'s value for ``packages`` (name → version)."""
    from packaging.utils import canonicalize_name

    pins = {canonicalize_name(name): version for name, version in packages.items()}
    return " ".join(f"{name}=={pins[name]}" for name in sorted(pins))


def labelled_packages(config: Mapping[str, Any]) -> dict[str, str] | None:
    """The packages an image config's :data:`LABEL_PACKAGES` lists; None for an image without
    it (a base, or a runtime image built otherwise)."""
    from packaging.utils import canonicalize_name

    labels = (config.get("config") or {}).get("Labels") or {}
    text = labels.get(LABEL_PACKAGES)
    if not isinstance(text, str):
        return None
    found: dict[str, str] = {}
    for item in text.split():
        name, sep, version = item.partition("==")
        if sep and name and version:
            found[canonicalize_name(name)] = version
    return found


def lock_pins(lock: str) -> dict[str, str]:
    """A resolved lock's packages: canonical name → pinned version, or ``@ URL`` for a package
    given by its location. Options (``--index-url``) and comments are skipped."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for number, raw in enumerate(lock.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip().rstrip("\\").strip()
        if not line[:1].isalnum():
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise ImageError(
                f"line {number} of the app's resolved lock is not a requirement: {line!r} ({exc})",
                hint="Restage the app (conveyor restage APP) and build its image again.",
            ) from None
        exact = [s.version for s in requirement.specifier if s.operator in ("==", "===")]
        if requirement.url:
            version = f"@ {requirement.url}"
        elif len(exact) == 1:
            version = exact[0]
        else:
            version = str(requirement.specifier) or "any version"
        pins[canonicalize_name(requirement.name)] = version
    return pins


def check_lock(lock: str, runtime: Mapping[str, str], image: str) -> None:
    """ImageError naming every package ``lock`` pins at another version than ``runtime`` (the
    packages of the runtime ``image``, canonical name → version) has."""
    clashes = [
        (name, version, runtime[name])
        for name, version in sorted(lock_pins(lock).items())
        if name in runtime and not _same(version, runtime[name])
    ]
    if not clashes:
        return
    pinned = ", ".join(f"{name} {mine}" for name, mine, _ in clashes)
    has = ", ".join(f"{name} {theirs}" for name, _, theirs in clashes)
    aligned = " ".join(f"{name}=={theirs}" for name, _, theirs in clashes)
    raise ImageError(
        f"the app's requirements pin {pinned}, but {image} it is built on has {has}: "
        "installed over Conveyor's own packages, they may break Conveyor in the image "
        "(conveyor serve, a step's runner)",
        hint=f"Require the runtime's version in the app's requirements ({aligned}); or give "
        "the target a --runtime-image with the app's version (one built by `conveyor image "
        "runtime` where Conveyor runs with it, or without the --extra that brings it; or a "
        "team's image); or run an image built elsewhere (push --image APP=REF, task launch "
        "--image REF).",
    )


def _same(pinned: str, installed: str) -> bool:
    """Whether a pin names the installed version (PEP 440: ``1.17`` is ``1.17.0``)."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(pinned) == Version(installed)
    except InvalidVersion:
        return pinned == installed
