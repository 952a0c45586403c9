"""Bad binder URLs and brokers that do not answer: a clear BinderError naming the URL, no hang."""

from __future__ import annotations

import socket
import sys

import pytest

from conveyor.config import Settings
from conveyor.streams.binders import open_binder
from conveyor.streams.errors import BinderError


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize("scheme", ["nats"])
def test_a_broker_that_does_not_answer_is_named(scheme: str, settings: Settings) -> None:
    url = f"{scheme}://127.0.0.1:{closed_port()}"
    with pytest.raises(BinderError, match="cannot reach") as caught:
        open_binder(url, settings)
    assert url in str(caught.value)


@pytest.mark.parametrize(("scheme", "module"), [("nats", "nats")])
def test_a_missing_client_library_names_the_extra_to_install(
    scheme: str, module: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(BinderError, match=rf"install conveyor\[{scheme}\]"):
        open_binder(f"{scheme}://127.0.0.1:{closed_port()}", settings)
