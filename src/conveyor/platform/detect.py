"""What a buildpack would find in an app's folder: its requirements file and its Procfile.

A Cloud Foundry or Heroku app states its dependencies by the files it holds
and its commands in a ``Procfile``; the manifest then needs neither
``requirements:`` nor ``command:``.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "requirements.txt").write_text("flask\\n")
>>> _ = (folder / "Procfile").write_text("web: gunicorn app:app\\n")
>>> detect_requirements(folder), read_procfile(folder)
(PurePosixPath('requirements.txt'), {'web': 'gunicorn app:app'})
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from conveyor.platform.errors import ManifestError

__all__ = ["detect_requirements", "read_procfile"]

#: Most exact first: a lock pins everything; requirements.txt is what the app chose to list
#: (a pyproject.toml beside it may only configure tools).
_REQUIREMENTS = ("uv.lock", "requirements.txt", "pyproject.toml")
_LINE = re.compile(r"([A-Za-z0-9_-]+)\s*:\s*(.*)")
_MAX_BYTES = 64 * 1024


def detect_requirements(folder: Path) -> PurePosixPath | None:
    """The requirements file staging should use for ``folder``, or None if it has none."""
    for name in _REQUIREMENTS:
        if (folder / name).is_file() and (
            name != "uv.lock" or (folder / "pyproject.toml").is_file()
        ):
            return PurePosixPath(name)
    return None


def read_procfile(folder: Path) -> dict[str, str]:
    """The process types and commands of ``folder``'s Procfile ({} if it has none).

    Blank lines and ``#`` comments are skipped; a type given twice keeps its last line,
    as Heroku does. A line that is not ``type: command`` is a ManifestError naming it.
    """
    path = folder / "Procfile"
    if not path.is_file():
        return {}
    try:
        text = path.read_bytes()[:_MAX_BYTES].decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path}: cannot read it ({error})") from None
    commands: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.fullmatch(line.strip())
        if match is None or not match[2].strip():
            raise ManifestError(
                f"{path}:{number}: expected 'type: command' (for example "
                f"'web: gunicorn app:app'), got {line.strip()!r}"
            )
        commands[match[1]] = match[2].strip()
    return commands
