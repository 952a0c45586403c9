"""User functions the ``python`` processor calls in the runtime tests."""

from __future__ import annotations

import threading
from typing import Any

#: Set by a test to let ``held`` return; ``entered`` tells the test a batch is in flight.
release = threading.Event()
entered = threading.Event()


def double(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "n": payload["n"] * 2}


def held(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    entered.set()
    release.wait(30)
    return payloads
