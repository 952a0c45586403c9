"""Running the service: our HTTP server on uvloop in one process, or N forked workers.

With several workers the model is loaded once, then the process forks, so
workers share the model's memory pages.

Connections are dealt to the workers round-robin by the parent, which owns
the listening socket: it accepts each connection and passes its file
descriptor to the next worker over a Unix socket (``SCM_RIGHTS``); the
worker serves it on its own event loop. Every worker therefore holds the
same number of a load generator's keep-alive connections, give or take one.
The alternatives measured worse: one shared listening socket (uvicorn
``--workers``) lets whichever worker wakes first take each connection, and
all 32 of wrk's connections can land on one worker; ``SO_REUSEPORT``
hashes connections over per-worker sockets, which for 32 connections
routinely splits them 12/20 (see docs/benchmarks.md). Passing a descriptor
costs one system call per *connection*, not per request.

The parent also supervises: it restarts a worker that crashes and, on
SIGTERM or SIGINT, stops accepting, passes the signal on and waits while
each worker finishes its in-flight requests (see :mod:`conveyor.serving.wire`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConveyorError, UsageError
from conveyor.serving.resolve import ResolvedModel
from conveyor.serving.service import ServeOptions

if TYPE_CHECKING:
    from conveyor.serving.app import ScoringApp
    from conveyor.serving.wire import HttpServer

__all__ = ["bind_sockets", "build_app", "run_in_thread", "serve"]

#: A worker that dies sooner than this after starting is not restarted.
_CRASH_LOOP_SECONDS = 2.0


def build_app(resolved: ResolvedModel, options: ServeOptions, *, worker: int = 0) -> ScoringApp:
    """The app for ``resolved`` (fresh metrics and batcher: call it in the serving process)."""
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


async def _serve(
    app: ScoringApp,
    options: ServeOptions,
    sockets: list[socket.socket],
    *,
    channel: socket.socket | None = None,
    signals: bool = True,
    started: Callable[[asyncio.AbstractEventLoop, asyncio.Event], None] | None = None,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM (or ``started``'s event is set), then stop gracefully.

    With a ``channel``, connections arrive from the supervisor over that Unix
    socket; the supervisor closing it means stop, as SIGTERM does.
    """
    from conveyor.serving.wire import HttpServer

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    server = HttpServer(
        app, keep_alive=options.keep_alive, graceful_timeout=options.graceful_timeout
    )
    await server.start(sockets)
    if signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    if channel is not None:
        channel.setblocking(False)
        loop.add_reader(channel.fileno(), _take, channel, server, stop)
    if started is not None:
        started(loop, stop)
    try:
        await stop.wait()
    finally:
        if channel is not None:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(channel.fileno())
        await server.stop()


def _take(channel: socket.socket, server: HttpServer, stop: asyncio.Event) -> None:
    """Serve every connection the supervisor has passed over the channel."""
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(channel, 16, 16)
        except (BlockingIOError, InterruptedError):
            return
        if not data and not fds:  # the supervisor is gone: stop like on SIGTERM
            asyncio.get_running_loop().remove_reader(channel.fileno())
            stop.set()
            return
        for fd in fds:
            server.adopt(socket.socket(fileno=fd))


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop where it exists."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if sys.platform != "win32":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


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
    app = build_app(resolved, options)
    handles: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    listening = threading.Event()

    def started(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        handles.append((loop, stop))
        listening.set()

    def main() -> None:
        try:
            _run(_serve(app, options, [sock], signals=False, started=started))
        finally:
            listening.set()

    thread = threading.Thread(target=main, name="conveyor-serve", daemon=True)
    thread.start()
    listening.wait(timeout=30)

    def stop() -> None:
        if handles:
            loop, stop_event = handles[0]
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(timeout=options.graceful_timeout + 5)
        sock.close()

    return thread, stop


def _run_worker(
    resolved: ResolvedModel,
    options: ServeOptions,
    sock: socket.socket | None,
    index: int,
    channel: socket.socket | None = None,
) -> None:
    if options.workers > 1:
        _limit_threads(options.workers)
    app = build_app(resolved, options, worker=index)
    _run(_serve(app, options, [sock] if sock is not None else [], channel=channel))


def serve(
    resolved: ResolvedModel,
    options: ServeOptions,
    *,
    announce: Callable[[str, int], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; ``announce(host, port)`` is called once listening."""
    if options.workers < 1:
        raise UsageError("--workers must be at least 1")
    listener = bind_sockets(options.host, options.port, 1)[0]
    port = listener.getsockname()[1]
    if options.workers == 1:
        if announce:
            announce(options.host, port)
        try:
            _run_worker(resolved, options, listener, 0)
        finally:
            listener.close()
        return
    # Multiprocess metrics: every worker writes its own files, a scrape sums them.
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    own_dir = None
    if not metrics_dir:
        own_dir = tempfile.mkdtemp(prefix="conveyor-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    try:
        _Supervisor(resolved, options, listener).run(announce, port)
    finally:
        listener.close()
        if own_dir is not None:
            import shutil

            shutil.rmtree(own_dir, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


class _Supervisor:
    """Forks the workers, deals them connections round-robin, restarts the ones that die."""

    def __init__(
        self, resolved: ResolvedModel, options: ServeOptions, listener: socket.socket
    ) -> None:
        self.resolved = resolved
        self.options = options
        self.listener = listener
        self.stopping = threading.Event()
        self.children: dict[int, int] = {}  # pid -> worker index
        self.channels: list[socket.socket | None] = [None] * options.workers
        self.started: dict[int, float] = {}  # worker index -> monotonic start time
        self.failed = False
        self.lock = threading.Lock()

    def fork(self, index: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                self.listener.close()
                ours.close()
                for other in self.channels:
                    if other is not None:
                        other.close()
                _run_worker(self.resolved, self.options, None, index, channel=theirs)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        ours.settimeout(5.0)  # a worker that stops reading must not stall the others
        with self.lock:
            old = self.channels[index]
            self.channels[index] = ours
        if old is not None:
            old.close()
        self.children[pid] = index
        self.started[index] = time.monotonic()

    def deal(self) -> None:
        """Accept connections and hand each to the next worker (runs in a thread)."""
        self.listener.settimeout(0.2)
        turn = 0
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.stopping.is_set():
                    return
                continue
            with conn:
                for _ in range(self.options.workers):
                    index, turn = turn, (turn + 1) % self.options.workers
                    with self.lock:
                        channel = self.channels[index]
                    if channel is None:
                        continue
                    try:
                        socket.send_fds(channel, [b"c"], [conn.fileno()])
                        break
                    except OSError:  # that worker is gone or stuck: try the next one
                        continue

    def run(self, announce: Callable[[str, int], None] | None, port: int) -> None:
        def forward(signum: int, _frame: Any) -> None:
            self.stopping.set()
            # Stop listening now, not once the workers have drained: a new
            # connection is refused at once (a client or router retries
            # elsewhere) instead of waiting in the backlog to be reset.
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            for pid in list(self.children):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        dealer = threading.Thread(target=self.deal, name="conveyor-dealer", daemon=True)
        try:
            # Fork every worker before the dealer thread exists (fork copies one thread only).
            for index in range(self.options.workers):
                self.fork(index)
            dealer.start()
            if announce:
                announce(self.options.host, port)
            self._wait()
            if self.failed:
                raise ConveyorError("a worker failed as it started; its error is printed above")
        finally:
            self.stopping.set()
            for s, handler in previous.items():
                signal.signal(s, handler)
            if dealer.is_alive():
                dealer.join(timeout=5)
            for channel in self.channels:
                if channel is not None:
                    channel.close()

    def _wait(self) -> None:
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            index = self.children.pop(pid, -1)
            if index < 0:
                continue
            _mark_dead(pid)
            if self.stopping.is_set():
                continue
            code = os.waitstatus_to_exitcode(status)
            if time.monotonic() - self.started[index] < _CRASH_LOOP_SECONDS:
                # Dying right after start will not get better by restarting.
                print(
                    f"conveyor serve: worker {index} (pid {pid}) exited with {code} right after "
                    "starting; stopping",
                    file=sys.stderr,
                    flush=True,
                )
                self.failed = True
                self.stopping.set()
                for other in list(self.children):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(other, signal.SIGTERM)
                continue
            print(
                f"conveyor serve: worker {index} (pid {pid}) exited with {code}; restarting",
                file=sys.stderr,
                flush=True,
            )
            self.fork(index)


def _mark_dead(pid: int) -> None:
    with contextlib.suppress(Exception):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
