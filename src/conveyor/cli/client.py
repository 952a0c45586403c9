"""The CLI's side of the control API: plain ``http.client``, the token from the home folder.

The API address is the one the running platform wrote to
``<home>/platform/server.json`` (so a platform started on port 0 is found),
else the CONVEYOR_API setting. Errors come back as :class:`ApiError` with
the server's message and hint; a platform that does not answer is
:class:`PlatformNotRunning`, which says how to start it.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from conveyor.config import Settings
from conveyor.errors import ConveyorError

__all__ = ["ApiError", "PlatformClient", "PlatformNotRunning", "connect", "say"]


class ApiError(ConveyorError):
    """The platform refused a request (4xx/5xx) and said why.

    The CLI exits 2 when the request itself was wrong (400: a stream definition, an
    option, a property, a manifest), as it does for the same mistakes found locally,
    and 1 for everything else (not found, conflict, failure).
    """

    def __init__(self, message: str, *, hint: str | None = None, status: int = 400) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.exit_code = 2 if status == 400 else 1


class PlatformNotRunning(ConveyorError):
    """Nothing answers at the platform's API address."""


class PlatformClient:
    """One platform's API, as the CLI talks to it."""

    def __init__(self, settings: Settings, *, timeout: float | None = 900.0) -> None:
        self.settings = settings
        self.timeout = timeout
        host, port = settings.api_address
        self.base = f"http://{host}:{port}"
        endpoint = settings.platform_dir / "server.json"
        try:
            self.endpoint: dict[str, Any] | None = json.loads(endpoint.read_text())
            self.base = str(self.endpoint["api"])
        except (OSError, ValueError, KeyError, TypeError):
            self.endpoint = None
        try:
            self.token: str | None = (settings.platform_dir / "token").read_text().strip()
        except OSError:
            self.token = None

    # -- plumbing -----------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.base)
        return http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=self.timeout
        )

    def _send(
        self, method: str, path: str, body: bytes | Any | None, headers: dict[str, str]
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = self._connect()
        if self.token:
            headers = {**headers, "Authorization": f"Bearer {self.token}"}
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
        except (ConnectionRefusedError, FileNotFoundError, OSError) as exc:
            conn.close()
            if isinstance(exc, TimeoutError):
                raise PlatformNotRunning(
                    f"the platform at {self.base} did not answer within {self.timeout} s"
                ) from None
            raise PlatformNotRunning(
                f"the platform is not running (nothing answers at {self.base})",
                hint="Start it with `conveyor up` (or `conveyor server` in the foreground).",
            ) from None
        if response.status >= 400:
            data = response.read()
            conn.close()
            try:
                payload = json.loads(data)
                message, hint = payload.get("error") or data.decode(), payload.get("hint")
            except ValueError:
                message, hint = data.decode(errors="replace") or response.reason, None
            raise ApiError(str(message), hint=hint, status=response.status)
        return conn, response

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON request, its JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn, response = self._send(method, path, data, headers)
        try:
            return json.loads(response.read() or b"null")
        finally:
            conn.close()

    def stream(self, method: str, path: str, body: Any = None) -> Iterator[dict[str, Any]]:
        """A request answered with JSON lines, yielded as they arrive."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn, response = self._send(method, path, data, headers)
        try:
            while line := response.readline():
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()

    def operation(self, path: str, body: Any = None, *, echo: Any = None) -> dict[str, Any]:
        """A long operation: progress lines to ``echo``, then its result (or its error)."""
        for item in self.stream("POST", path, body):
            if "progress" in item:
                if echo is not None:
                    echo(item["progress"])
            elif "result" in item:
                result: dict[str, Any] = item["result"]
                return result
            elif "error" in item:
                raise ApiError(item["error"], hint=item.get("hint"), status=item.get("status", 409))
        raise ApiError("the platform ended the operation without a result", status=500)

    def upload(self, digest: str, path: Path) -> None:
        size = path.stat().st_size
        with path.open("rb") as handle:
            conn, response = self._send(
                "PUT",
                f"/v1/blobs/{quote(digest)}",
                handle,
                {"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            )
            response.read()
            conn.close()

    @property
    def pid(self) -> int | None:
        return None if self.endpoint is None else int(self.endpoint.get("pid", 0)) or None

    def alive(self) -> bool:
        """Whether the recorded platform process still runs (an exited one not yet reaped
        by its parent, as when this very process started it, has stopped)."""
        pid = self.pid
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not _exited(pid)


def _exited(pid: int) -> bool:
    """Whether ``pid`` has exited and only waits for its parent to collect its status.

    /proc tells (state Z) without taking the status from the parent; where there is
    no /proc, ``pid`` is reaped if it is a child of this process.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return True  # gone between the two looks
    except OSError:
        return False
    else:
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    try:
        reaped, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not ours: the signal check above is all there is
        return False
    return reaped == pid


def connect(timeout: float | None = 900.0) -> PlatformClient:
    """The client of the platform this process's settings point at."""
    from conveyor.config import get_settings

    return PlatformClient(get_settings(), timeout=timeout)


def say(message: str) -> None:
    """Progress for the user: on stderr, so stdout stays the command's result."""
    import click

    click.echo(message, err=True)
