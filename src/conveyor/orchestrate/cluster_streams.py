"""A stream's apps as app specs for a cluster: one Deployment each, wired by a broker binder.

Locally a stream app runs sandboxed beside the platform (:mod:`.stream_sandbox`
hands it files and the embedded binder's folder); on a cluster nothing of this
machine is there, so the launch spec goes as planned and the binder must be a
broker every pod reaches (Kafka, Redis, RabbitMQ, NATS).

A ``score`` app whose model is ``run:<id>/<name>`` or ``models:/...`` reads no
registry there either: at deploy the model is looked up (an alias as it points
then), its blob published to the target's artifact root, and the app scores
``artifact:<digest>/<file>`` from the bucket (``CONVEYOR_ARTIFACT_ROOT``, the
target's ``--artifact-secret``), with the types its run recorded trusted in
that blob only (:func:`scored_models`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from conveyor.errors import UsageError
from conveyor.orchestrate.stream_kind import StreamKind
from conveyor.orchestrate.streams import StreamService
from conveyor.platform import AppSpec, RouteSpec
from conveyor.repro.registered import ModelBlob, is_model_reference
from conveyor.store.sealing import unseal_values
from conveyor.streams.binders import check_binder_url

__all__ = ["check_scored_models", "cluster_stream_specs", "scored_models"]


def cluster_stream_specs(
    service: StreamService, name: str, binder: str | None, properties: Mapping[str, str]
) -> list[AppSpec]:
    """The stream's apps, sinks first (consumers exist before producers publish)."""
    from conveyor.streams.plan import plan_stream

    if binder is None or check_binder_url(binder) == "embedded":
        raise UsageError(
            f"stream {name!r}: on a cluster the apps need a broker every pod reaches",
            hint="Add --binder kafka://HOST:9092, redis://HOST:6379/0 or amqp://HOST/.",
        )
    row = service.records.stream(name)
    planned = plan_stream(
        name,
        # The pods are given URLs' passwords in clear; the registry keeps them sealed.
        unseal_values(service.controller.state.secrets, row.definition),
        binder=binder,
        properties=properties,
        registered=service.registered(),
    )
    user_apps = [a.name for a in planned if a.user_app is not None]
    if user_apps:
        raise UsageError(
            f"stream {name!r}: registered apps ({', '.join(user_apps)}) cannot run on a cluster "
            "yet; their source lives on this machine"
        )
    return [
        AppSpec(
            name=app.name,
            kind=StreamKind.name,
            instances=app.instances,
            memory=app.memory,
            routes=() if app.route is None else (RouteSpec(path=app.route),),
            options={
                "stream_app": app.launch.to_json(),
                "stream": name,
                "position": planned.index(app),
            },
        )
        for app in reversed(planned)
    ]


def _registered_model(spec: AppSpec) -> str | None:
    """The ``run:``/``models:/`` model a stream's score app scores with, if it has one."""
    launch = spec.options.get("stream_app") or {}
    model = str((launch.get("options") or {}).get("model") or "")
    if launch.get("app") == "score" and is_model_reference(model):
        return model
    return None


def check_scored_models(stream: str, apps: list[AppSpec], artifact_root: str | None) -> None:
    """Refuse a score app's registered model on a target without an artifact root, where
    pods cannot read it (before anything is uploaded or applied)."""
    for spec in apps:
        model = _registered_model(spec)
        if model is not None and artifact_root is None:
            raise UsageError(
                f"stream {stream!r}: app {spec.name!r} scores with {model!r}, which lives in "
                "the artifact store, and the target has no artifact root pods can read",
                hint="Add the target again with --artifact-root s3://BUCKET/PREFIX.",
            )


def scored_models(
    apps: list[AppSpec], publish: Callable[[str], ModelBlob]
) -> list[tuple[AppSpec, ModelBlob | None]]:
    """Each app with the registered model it scores with, as ``publish`` puts it in the
    target's artifact root, named in its launch spec as ``artifact:<digest>/<file>`` with
    its run, digest and trusted types; None for the other apps."""
    out: list[tuple[AppSpec, ModelBlob | None]] = []
    for spec in apps:
        model = _registered_model(spec)
        if model is None:
            out.append((spec, None))
            continue
        blob = publish(model)
        launch = dict(spec.options["stream_app"])
        launch["options"] = {
            **launch.get("options", {}),
            "model": blob.uri,
            "model-run-id": blob.run_id or "",
            "model-digest": blob.digest,
            "model-trusted-types": ",".join(blob.trusted_types),
        }
        options = {**spec.options, "stream_app": launch}
        out.append((dataclasses.replace(spec, options=options), blob))
    return out
