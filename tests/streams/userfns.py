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


def awkward(payload: dict[str, Any]) -> dict[str, Any]:
    """NumPy values are fine in a payload; a set is not JSON and must be dead-lettered."""
    import numpy as np

    if payload["n"] == 2:
        return {"n": 2, "tags": {"a", "b"}}
    return {"n": np.int64(payload["n"]), "score": np.float32(0.5)}
