"""Looking for a secret where it must not be: files of a platform, answers of a source."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path


def post_status(url: str, authorization: str | None) -> int:
    """The status a JSON POST to ``url`` gets, with that ``Authorization`` header (or none)."""
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    request = urllib.request.Request(url, data=b'{"n": 0}', headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        with error:
            return error.code


def files_holding(folder: Path, text: str) -> list[str]:
    """The files under ``folder`` (up to 64 MiB each) whose bytes contain ``text``."""
    found = []
    for path in folder.rglob("*"):
        try:
            small = path.is_file() and path.stat().st_size < 64 << 20
            if small and text.encode() in path.read_bytes():
                found.append(str(path))
        except OSError:  # removed meanwhile, a socket
            continue
    return found
