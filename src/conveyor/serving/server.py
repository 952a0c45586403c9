"""Running the service: uvicorn (uvloop + httptools) in one process, or N forked workers.

With several workers the model is loaded once, then the process forks, so
workers share the model's memory pages. Each worker gets **its own**
listening socket bound to the same port with ``SO_REUSEPORT``; the kernel
then spreads new connections over the sockets by hashing the connection's
addresses. (With one shared socket, as uvicorn ``--workers`` does, whichever
worker wakes first takes each connection, and a load generator's keep-alive
connections can all land on one worker.)

The parent only supervises: it restarts a worker that crashes and, on
SIGTERM or SIGINT, passes the signal on and waits while each worker
finishes its in-flight requests (uvicorn's graceful shutdown).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from conveyor.errors import UsageError
from conveyor.serving.resolve import ResolvedModel
from conveyor.serving.service import ServeOptions

__all__ = ["bind_sockets", "build_app", "run_in_thread", "serve"]


def build_app(resolved: ResolvedModel, options: ServeOptions, *, worker: int = 0) -> Any:
    """The ASGI app for ``resolved`` (fresh metrics and batcher: call it in the serving process)."""
    from conveyor.serving.app import ScoringApp
    from conveyor.serving.metrics import ServiceMetrics
    from conveyor.serving.service import ServedModel

    served = ServedModel(resolved=resolved, options=options, metrics=ServiceMetrics.create())
    return ScoringApp(served, worker=worker)


def bind_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one port (``SO_REUSEPORT`` when more than one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if count > 1:
                if not hasattr(socket, "SO_REUSEPORT"):
                    raise UsageError("--workers above 1 needs SO_REUSEPORT (Linux, BSD, macOS)")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]  # port 0: the others join the port the first got
            sock.listen(2048)
            sock.set_inheritable(True)
            sockets.append(sock)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sockets


def _server(config: Any) -> Any:
    """A uvicorn Server for which SIGINT/SIGTERM mean "finish in-flight requests, exit 0"."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            # uvicorn re-raises the captured signal after shutting down, which
            # turns a requested, graceful stop into a KeyboardInterrupt or a
            # death by signal; a stop the operator asked for is a clean exit.
            self._captured_signals.clear()

    return Server(config)


def _config(app: Any, options: ServeOptions, log_level: str) -> Any:
    import uvicorn

    loop = "uvloop" if sys.platform != "win32" else "asyncio"
    return uvicorn.Config(
        app,
        loop=loop,
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=int(options.graceful_timeout),
        server_header=False,
    )


def _limit_threads(workers: int) -> None:
    """One process per core already: keep BLAS/OpenMP pools from oversubscribing the machine."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(max(1, (os.cpu_count() or 1) // workers))


def run_in_thread(
    resolved: ResolvedModel, options: ServeOptions, sock: socket.socket
) -> tuple[threading.Thread, Callable[[], None]]:
    """Serve on ``sock`` from a background thread; returns the thread and a stop function.

    Used by tests and notebooks; ``serve`` is the production entry point.
    """

    server = _server(_config(build_app(resolved, options), options, "warning"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="conveyor-serve", daemon=True
    )
    thread.start()

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=options.graceful_timeout + 5)
        sock.close()

    return thread, stop


def _run_worker(
    resolved: ResolvedModel, options: ServeOptions, sock: socket.socket, index: int
) -> None:

    if options.workers > 1:
        _limit_threads(options.workers)
    app = build_app(resolved, options, worker=index)
    _server(_config(app, options, "warning")).run(sockets=[sock])


def serve(
    resolved: ResolvedModel,
    options: ServeOptions,
    *,
    announce: Callable[[str, int], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; ``announce(host, port)`` is called once listening."""
    if options.workers < 1:
        raise UsageError("--workers must be at least 1")
    sockets = bind_sockets(options.host, options.port, options.workers)
    port = sockets[0].getsockname()[1]
    if options.workers == 1:
        if announce:
            announce(options.host, port)
        _run_worker(resolved, options, sockets[0], 0)
        return
    # Multiprocess metrics: every worker writes its own files, a scrape sums them.
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    own_dir = None
    if not metrics_dir:
        own_dir = tempfile.mkdtemp(prefix="conveyor-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    try:
        _supervise(resolved, options, sockets, announce, port)
    finally:
        for sock in sockets:
            sock.close()
        if own_dir is not None:
            import shutil

            shutil.rmtree(own_dir, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


def _fork_worker(
    resolved: ResolvedModel, options: ServeOptions, sockets: list[socket.socket], index: int
) -> int:
    pid = os.fork()
    if pid:
        return pid
    # Child: keep only its own socket, restore default signal handling for uvicorn.
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for i, sock in enumerate(sockets):
            if i != index:
                sock.close()
        _run_worker(resolved, options, sockets[index], index)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _supervise(
    resolved: ResolvedModel,
    options: ServeOptions,
    sockets: list[socket.socket],
    announce: Callable[[str, int], None] | None,
    port: int,
) -> None:
    stopping = threading.Event()
    children: dict[int, int] = {}  # pid -> worker index

    def forward(signum: int, _frame: Any) -> None:
        stopping.set()
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for index in range(options.workers):
            children[_fork_worker(resolved, options, sockets, index)] = index
        if announce:
            announce(options.host, port)
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            index = children.pop(pid, -1)
            if index < 0:
                continue
            _mark_dead(pid)
            if not stopping.is_set():
                code = os.waitstatus_to_exitcode(status)
                print(
                    f"conveyor serve: worker {index} (pid {pid}) exited with {code}; restarting",
                    file=sys.stderr,
                    flush=True,
                )
                children[_fork_worker(resolved, options, sockets, index)] = index
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _mark_dead(pid: int) -> None:
    with contextlib.suppress(Exception):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
