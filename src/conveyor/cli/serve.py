"""``conveyor serve MODEL``: a model as an HTTP scoring service."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from conveyor.config import SERVE_PORT

if TYPE_CHECKING:
    from conveyor.serving.predictions import PredictionLogOptions

__all__ = ["serve_command"]


@click.command("serve")
@click.argument("model_uri", metavar="MODEL")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    default=SERVE_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0 picks a free one and prints it); the default is clear of "
    "the platform's control API (7070) and router (8080).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Worker processes; the model is loaded once and shared.",
)
@click.option("--name", default=None, help="Model name in URLs (default: the file's stem).")
@click.option(
    "--trust",
    is_flag=True,
    help="Trust this model file: allow pickle/joblib, and every type a skops file holds.",
)
@click.option(
    "--max-body",
    default="16M",
    show_default=True,
    metavar="SIZE",
    help="Largest request body accepted (bytes, or with K/M/G).",
)
@click.option(
    "--timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.001),
    help="Seconds a request may take before it is answered with 504.",
)
@click.option(
    "--batch-max-rows",
    default=256,
    show_default=True,
    type=click.IntRange(1),
    help="Most rows merged into one predict call.",
)
@click.option(
    "--batch-wait-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0, 1000.0),
    help="Milliseconds to wait for more requests before scoring a small batch.",
)
@click.option(
    "--keep-alive",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.01),
    help="Seconds an idle keep-alive connection stays open.",
)
@click.option(
    "--run-id",
    default=None,
    metavar="RUN",
    help="The run that trained MODEL, sent as x-model-run-id (a run: URI finds it itself).",
)
@click.option(
    "--expect-digest",
    default=None,
    metavar="DIGEST",
    help="Refuse MODEL unless its digest is DIGEST (the platform passes the registry's).",
)
@click.option(
    "--trust-type",
    "trust_types",
    multiple=True,
    metavar="TYPE",
    help="Trust TYPE in this skops file; needs --expect-digest (or an artifact: MODEL, "
    "whose digest it names). The platform passes the "
    "types the run recorded when conveyor.save_model wrote the file. Repeatable.",
)
@click.option(
    "--model-version",
    default=None,
    metavar="N",
    help="The registered version MODEL is, sent as x-model-version NAME/N with --name "
    "(a models:/ URI finds it itself).",
)
@click.option(
    "--graceful-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.0),
    help="Seconds in-flight requests get to finish on shutdown.",
)
@click.option(
    "--request-log",
    default=None,
    metavar="SHARE",
    help="Record which model answered this share of requests (on, 0.1, 10%), for "
    "`conveyor lineage <request-id>`; default: CONVEYOR_REQUEST_LOG, else off.",
)
@click.option(
    "--prediction-log",
    default=None,
    metavar="DESTINATION",
    envvar="CONVEYOR_PREDICTION_LOG",
    help="Send a sample of requests' inputs and outputs, with their request id and model, "
    "to this stream destination (env CONVEYOR_PREDICTION_LOG).",
)
@click.option(
    "--prediction-log-binder",
    default="embedded",
    show_default=True,
    metavar="URL",
    envvar="CONVEYOR_PREDICTION_LOG_BINDER",
    help="The binder the prediction log's destination is on.",
)
@click.option(
    "--prediction-log-sample",
    default="on",
    show_default=True,
    metavar="SHARE",
    envvar="CONVEYOR_PREDICTION_LOG_SAMPLE",
    help="Share of requests the prediction log keeps (on, 0.1, 10%).",
)
@click.option(
    "--strict-inputs",
    is_flag=True,
    help="Refuse requests with fields the model does not take (by default they are left "
    "out and named in the x-ignored-fields response header).",
)
def serve_command(
    model_uri: str,
    host: str,
    port: int,
    workers: int,
    name: str | None,
    trust: bool,
    max_body: str,
    timeout: float,
    batch_max_rows: int,
    batch_wait_ms: float,
    keep_alive: float,
    run_id: str | None,
    expect_digest: str | None,
    trust_types: tuple[str, ...],
    model_version: str | None,
    graceful_timeout: float,
    strict_inputs: bool,
    request_log: str | None,
    prediction_log: str | None,
    prediction_log_binder: str,
    prediction_log_sample: str,
) -> None:
    """Serve MODEL over HTTP: Open Inference Protocol V2, KServe V1, MLflow and /predict.

    MODEL is a model file (.skops, .onnx, .pmml; .pkl/.joblib with --trust),
    an MLflow model directory, run:<run-id>/<artifact>, a registered
    version: models:/<name>/<version> or models:/<name>@<alias>, or a blob of
    the artifact store: artifact:<digest>/<file name> (verified as it is read).

    \b
    Examples:
      conveyor serve model.skops --workers 2
      conveyor serve mlflow-model-dir/ --port 9000
      conveyor serve models:/diagnosis@champion
      curl -s localhost:8081/predict -d '[{"age": 41, "income": 52000}]'
    """
    from conveyor.config import get_settings, parse_share, parse_size
    from conveyor.serving import ServeOptions, resolve_model_uri
    from conveyor.serving.server import serve
    from conveyor.serving.service import RequestLogOptions
    from conveyor.serving.warm import await_activation

    settings = get_settings()
    share = (
        settings.request_log if request_log is None else parse_share(request_log, "--request-log")
    )
    resolved = resolve_model_uri(
        model_uri,
        settings,
        trusted=trust,
        name=name,
        run_id=run_id,
        expect_digest=expect_digest,
        trusted_types=trust_types,
        version=model_version,
    )
    if await_activation():  # a platform's warm spare: now told which instance it is
        import os

        port = int(os.environ["PORT"])
    log_options = None
    if share > 0:
        log_options = RequestLogOptions(
            folder=settings.request_log_dir or settings.request_log_root / resolved.name,
            sample=share,
            retention=settings.request_log_retention,
            app=settings.app,
            revision=settings.app_revision,
        )

    options = ServeOptions(
        host=host,
        port=port,
        workers=workers,
        max_body=parse_size(max_body, "--max-body"),
        timeout=timeout,
        batch_max_rows=batch_max_rows,
        batch_wait=batch_wait_ms / 1000.0,
        keep_alive=keep_alive,
        graceful_timeout=graceful_timeout,
        strict_inputs=strict_inputs,
        request_log=log_options,
        prediction_log=_prediction_log(
            prediction_log, prediction_log_binder, prediction_log_sample, resolved.name
        ),
    )

    def announce(bound_host: str, bound_port: int) -> None:
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        run = f", run {resolved.run_id}" if resolved.run_id else ""
        click.echo(
            f"Serving model {resolved.name!r} ({resolved.model.format}, {resolved.digest[:19]}"
            f"{run}) on http://{shown}:{bound_port} with {workers} worker(s); docs at /docs",
        )
        sys.stdout.flush()

    serve(resolved, options, announce=announce)


def _prediction_log(
    destination: str | None, binder_url: str, sample: str, model: str
) -> PredictionLogOptions | None:
    """What ``--prediction-log`` asks for: a publisher to ``destination`` on ``binder_url``."""
    if not destination:
        return None
    from conveyor.config import get_settings, parse_share
    from conveyor.serving.predictions import PredictionLogOptions, Publish
    from conveyor.streams.binders import check_binder_url, shown_binder_url

    share = parse_share(sample, "--prediction-log-sample")
    check_binder_url(binder_url)  # an unknown binder fails now, not in every worker
    settings = get_settings()

    def open_publisher() -> tuple[Publish, Callable[[], None]]:
        from conveyor.streams.binders import open_binder
        from conveyor.streams.messages import Message, new_headers

        binder = open_binder(binder_url, settings)

        def publish(records: list[dict[str, Any]]) -> None:
            binder.publish(
                destination, [Message(r, new_headers("predictions", model)) for r in records]
            )

        return publish, binder.close

    where = f"{shown_binder_url(binder_url)}/{destination}"
    return PredictionLogOptions(open=open_publisher, sample=share, where=where)
