"""Run one stream app instance as a process: how the platform starts every stream app.

Command line (flags override the JSON spec)::

    python -m conveyor.streams.run --app filter --input fraud.http --output fraud.filter \\
        --group fraud --binder embedded --option expression='amount > 0'

or the whole :class:`~conveyor.streams.runtime.LaunchSpec` as JSON in
``CONVEYOR_STREAM_APP``::

    CONVEYOR_STREAM_APP='{"app": "filter", "input": "fraud.http", "output": "fraud.filter",
                          "group": "fraud", "options": {"expression": "amount > 0"}}'

Also read from the environment: ``CONVEYOR_HOME`` (and the other Conveyor
settings), ``CONVEYOR_EXTRA_PATH`` (folders appended to ``sys.path``: a
registered app's packages, after the runtime's own) and ``PORT``: where the
``http`` source listens (it answers ``GET /health`` there too); any other app
serves ``GET /health`` and ``GET /status`` on it (see
:mod:`conveyor.streams.status`). SIGTERM or SIGINT stops the app after its
batch in hand. Exit status: 0 after a stop, 2 for a
wrong spec, app or option, 1 when the app cannot start (binder unreachable,
model not loadable) or fails.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from conveyor.config import Settings
from conveyor.errors import ConveyorError, UsageError
from conveyor.streams.runtime import LaunchSpec, StreamAppRuntime
from conveyor.streams.status import StatusServer

__all__ = ["main", "spec_from"]

ENV_SPEC = "CONVEYOR_STREAM_APP"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m conveyor.streams.run",
        description="Run one stream app (source, processor or sink) over a binder.",
        epilog=f"The whole spec may also come as JSON in ${ENV_SPEC}; flags override it.",
    )
    p.add_argument("--app", help="catalogue name of the app (filter, score, log, ...)")
    p.add_argument("--input", help="destination to consume (processors and sinks)")
    p.add_argument("--output", help="destination to publish to (sources and processors)")
    p.add_argument("--group", help="consumer group on the input (the stream's name)")
    p.add_argument("--stream", help="stream name (default: the group)")
    p.add_argument("--label", help="the app's label in the stream (default: the app name)")
    p.add_argument("--binder", help="embedded (default), redis://host:port/0 or amqp://...")
    p.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="an app option"
    )
    p.add_argument("--instance-index", type=int)
    p.add_argument("--instance-count", type=int)
    p.add_argument("--input-partitioned", action="store_true", default=None)
    p.add_argument("--partition-key", help="expression whose value picks the output partition")
    p.add_argument("--partition-count", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-attempts", type=int)
    p.add_argument("--required-group", action="append", dest="required_groups", metavar="GROUP")
    return p


def spec_from(argv: Sequence[str], environ: Mapping[str, str]) -> LaunchSpec:
    """The launch spec from ``$CONVEYOR_STREAM_APP`` overridden by the command line."""
    base: dict[str, Any] = {}
    if environ.get(ENV_SPEC):
        try:
            base = orjson.loads(environ[ENV_SPEC])
        except orjson.JSONDecodeError as exc:
            raise UsageError(f"${ENV_SPEC} is not valid JSON: {exc}") from None
        if not isinstance(base, dict):
            raise UsageError(f"${ENV_SPEC} must be a JSON object")
    args = _parser().parse_args(list(argv))
    options = dict(base.get("options") or {})
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--option {item!r}: expected KEY=VALUE")
        options[key] = value
    merged = dict(base)
    for key, value in vars(args).items():
        if key != "option" and value is not None:
            merged[key] = value
    if options:
        merged["options"] = options
    return LaunchSpec.from_json(merged)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    try:
        spec = spec_from(sys.argv[1:] if argv is None else argv, env)
    except ConveyorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s {spec.stream_name}/{spec.app_label}"
        f"#{spec.instance_index} %(message)s",
        stream=sys.stderr,
    )
    # pika narrates every connection open and close at INFO.
    logging.getLogger("pika").setLevel(logging.WARNING)
    # A registered app's own packages (the platform stages them): after the runtime's own.
    for extra in env.get("CONVEYOR_EXTRA_PATH", "").split(os.pathsep):
        if extra and extra not in sys.path:
            sys.path.append(extra)
    port = int(env["PORT"]) if env.get("PORT", "").isdigit() else None
    status: StatusServer | None = None
    try:
        runtime = StreamAppRuntime(spec, Settings.from_env(env), port=port)
        signal.signal(signal.SIGTERM, lambda *_: runtime.stop())
        signal.signal(signal.SIGINT, lambda *_: runtime.stop())
        if port is not None and spec.app != "http":
            status = StatusServer(runtime, port)
            status.start()
        runtime.run()
    except ConveyorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # e.g. $PORT already taken
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if status is not None:
            status.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
