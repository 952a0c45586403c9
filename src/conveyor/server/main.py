"""The platform process: control API, router and supervisor on one event loop.

``conveyor server`` runs it in the foreground; ``conveyor up`` starts it in
the background. One platform per CONVEYOR_HOME (a file lock says which
process it is); its token lives in ``<home>/platform/token`` (mode 0600) and
the addresses it bound in ``<home>/platform/server.json``, which the CLI
reads. SIGTERM, SIGINT or ``POST /v1/shutdown`` stop every instance
gracefully, then the platform; the desired state stays in the registry for
the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from conveyor.config import Settings
from conveyor.platform.errors import PlatformError

if TYPE_CHECKING:
    from conveyor.platform.controller import Controller
    from conveyor.platform.isolation import IsolatedSpawner

__all__ = ["endpoint_file", "lock_file", "read_token", "run_server", "token_file"]

log = logging.getLogger("conveyor.server")


def token_file(settings: Settings) -> Path:
    return settings.platform_dir / "token"


def endpoint_file(settings: Settings) -> Path:
    return settings.platform_dir / "server.json"


def lock_file(settings: Settings) -> Path:
    return settings.platform_dir / "server.lock"


def read_token(settings: Settings) -> str | None:
    try:
        return token_file(settings).read_text().strip() or None
    except FileNotFoundError:
        return None


def _ensure_token(path: Path) -> str:
    existing = path.read_text().strip() if path.exists() else ""
    if existing:
        os.chmod(path, 0o600)
        return existing
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[IO[str]]:
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            raise PlatformError(
                f"a platform is already running for this home (pid {pid})",
                hint="Stop it with `conveyor down`, or set CONVEYOR_HOME to run another.",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield handle
    finally:
        handle.close()


def _listen(address: tuple[str, int], what: str, setting: str) -> socket.socket:
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc})"
        raise PlatformError(
            f"the {what} address {host}:{port} {why}",
            hint=f"Set {setting}=host:port to another address (port 0 picks a free one).",
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def run_server(settings: Settings) -> None:
    """Run the platform until it is told to stop (blocks)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        pass
    from conveyor.platform.isolation import IsolatedSpawner

    settings.platform_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _exclusive(lock_file(settings)):
        spawner = IsolatedSpawner(settings)
        # Before anything listens: where no isolation works, refuse with the reason and
        # the opt-out (CONVEYOR_ISOLATION=none), rather than crash every instance later.
        isolation = spawner.check()
        log.info("app instances are isolated: %s", isolation.describe())
        asyncio.run(_serve(settings, spawner))


async def _serve(settings: Settings, spawner: IsolatedSpawner) -> None:
    from conveyor.platform.controller import Controller
    from conveyor.platform.instance_env import platform_env
    from conveyor.platform.local import LocalTarget
    from conveyor.platform.router import AccessRecord, Meter, Router
    from conveyor.platform.routes import RouteTable
    from conveyor.server.api import create_app
    from conveyor.server.http import api_config
    from conveyor.store.apps import AppRepository
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.registry import Registry
    from conveyor.store.secrets import SecretBox

    pdir = settings.platform_dir
    token = _ensure_token(token_file(settings))
    api_sock = _listen(settings.api_address, "control API", "CONVEYOR_API")
    router_sock = _listen(settings.router_address, "router", "CONVEYOR_ROUTER")
    registry = Registry.from_settings(settings)
    artifacts = ArtifactStore.from_settings(settings)
    table = RouteTable()
    # Instances start from a clean environment, never the shell's that ran `conveyor up`.
    base_env = platform_env()
    if settings.trusted_types:  # what the operator trusts in skops files, for model apps too
        base_env["CONVEYOR_TRUSTED_TYPES"] = ",".join(settings.trusted_types)
    if settings.request_log > 0:  # model apps record request ids for `conveyor lineage`
        base_env["CONVEYOR_REQUEST_LOG"] = str(settings.request_log)
        base_env["CONVEYOR_REQUEST_LOG_RETENTION"] = str(settings.request_log_retention)
    meter = Meter()  # the router counts, the autoscaler and drains read
    target = LocalTarget(
        AppRepository(registry),
        log_dir=pdir / "logs",
        table=table,
        base_env=base_env,
        spawner=spawner,
        in_flight=meter.in_flight,
    )
    controller = Controller(
        registry,
        artifacts,
        pdir,
        target=target,
        secrets=SecretBox.from_settings(settings),
        meter=meter,
    )
    (pdir / "logs").mkdir(parents=True, exist_ok=True)
    access = (pdir / "logs" / "router-access.log").open("a", buffering=1)

    def record(entry: AccessRecord) -> None:
        access.write(entry.format() + "\n")

    router = Router(
        table,
        access=record,
        hosts=[settings.router_address[0]],
        meter=controller.meter,
        wake=controller.autoscaling.wake,
    )
    await router.start(sock=router_sock)
    stop = asyncio.Event()
    api_host, api_port = api_sock.getsockname()[:2]
    router_host, router_port = router_sock.getsockname()[:2]
    started = time.time()

    def info() -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "home": str(settings.home),
            "artifacts": artifacts.location,
            # Streams name their binder at deploy (--binder); this one is used when they do not.
            "binder": f"embedded ({settings.home / 'streams' / 'log.db'})",
            "api": f"http://{_host(api_host)}:{api_port}",
            "router": f"http://{_host(router_host)}:{router_port}",
            "started_at": started,
            "apps": len(controller.state.apps()),
        }

    from conveyor.server.cluster_apps import image_builders

    builders = image_builders(controller.dir / "image-layers")
    app = create_app(controller, token, info, stop.set, settings, image_builders=builders)
    config = api_config(app, hosts=[settings.api_address[0], api_host])
    server = _Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.ensure_future(server.serve(sockets=[api_sock]))
    _write_endpoint(endpoint_file(settings), info())
    bring_up = asyncio.ensure_future(controller.start())
    following = asyncio.ensure_future(_follow_aliases(controller, bring_up, settings))
    try:
        stop_wait = asyncio.ensure_future(stop.wait())
        await asyncio.wait({stop_wait, serving}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
    finally:
        endpoint_file(settings).unlink(missing_ok=True)
        for task in (following, bring_up):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await controller.close()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        await router.close()
        access.close()
        registry.close()


async def _follow_aliases(
    controller: Controller, bring_up: asyncio.Future[None], settings: Settings
) -> None:
    """Roll apps that follow a model alias when it moves, once every app is back up: here,
    and on the Kubernetes targets (their blob published to the target's artifact root)."""
    from conveyor.platform.follow import AliasFollower
    from conveyor.platform.kubernetes.follow import ClusterAliasFollower
    from conveyor.platform.kubernetes.models import artifact_roots
    from conveyor.server.cluster_apps import change_lock

    with contextlib.suppress(Exception):  # a failed start is reported where it is awaited
        await asyncio.shield(bring_up)
    clusters = ClusterAliasFollower(
        controller.state.registry,
        controller.artifacts,
        artifact_roots(settings),
        controller.state.services,
        lock=functools.partial(change_lock, controller),  # the control API's, one at a time
    )
    await asyncio.gather(AliasFollower(controller).run(), clusters.run())


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _write_endpoint(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class _Server:
    """uvicorn's server without its own signal handling (the platform stops it in order)."""

    def __init__(self, config: Any) -> None:
        import uvicorn

        class Quiet(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                yield

        self._server = Quiet(config)

    @property
    def should_exit(self) -> bool:
        return bool(self._server.should_exit)

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._server.should_exit = value

    async def serve(self, sockets: list[socket.socket]) -> None:
        await self._server.serve(sockets=sockets)
