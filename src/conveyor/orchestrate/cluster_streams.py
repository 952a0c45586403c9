"""A stream's apps as app specs for a cluster: one Deployment each, wired by a broker binder.

Locally a stream app runs sandboxed beside the platform (:mod:`.stream_sandbox`
hands it files and the embedded binder's folder); on a cluster nothing of this
machine is there, so the launch spec goes as planned and the binder must be a
broker every pod reaches (Kafka, Redis, RabbitMQ, NATS).
"""

from __future__ import annotations

from collections.abc import Mapping

from conveyor.errors import UsageError
from conveyor.orchestrate.stream_kind import StreamKind
from conveyor.orchestrate.streams import StreamService
from conveyor.platform import AppSpec, RouteSpec
from conveyor.store.sealing import unseal_values
from conveyor.streams.binders import check_binder_url

__all__ = ["cluster_stream_specs"]


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
