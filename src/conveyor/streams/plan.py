"""From a stream definition to the apps that run it: names, destinations, groups, instances.

Each app of ``fraud = http | filter | score | log`` becomes one platform app,
``fraud-<label>`` (lower-cased, '_' written '-': platform app names are DNS
labels), wired by destinations named ``<stream>.<label>``; the
consumer group on every input is the stream's name, so the instances of one
app share its input and a tap (another stream reading ``:fraud.score``) gets
its own copy. Deployment properties follow Spring Cloud Data Flow::

    deployer.<label>.count=2        instances of that app
    deployer.<label>.memory=512M    its memory limit
    deployer.<label>.autoscale.lag-target=1000   scale on the messages waiting in its input:
    deployer.<label>.max-count=4                 one instance per 1000, up to 4 (min-count: 1)
    deployer.<label>.autoscale.breach-duration=10s, ...cool-down=30s   how soon it changes
    app.<label>.<option>=<value>    an option, as if written in the definition
    app.<label>.partition-key-expression=<expr>   partition that app's input by a key: the
                                    app before it sends each key to one of its instances
    app.<label>.producer.partitionKeyExpression=<expr>   (SCDF's spelling, on the producer)
    deployer.*.count / app.*.<option>   the same for every app

>>> apps = plan_stream("fraud", "http --path=/tx | filter --expression='amount > 0' | log")
>>> [(a.name, a.launch.input, a.launch.output) for a in apps]  # doctest: +NORMALIZE_WHITESPACE
[('fraud-http', None, 'fraud.http'), ('fraud-filter', 'fraud.http', 'fraud.filter'),
 ('fraud-log', 'fraud.filter', None)]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.errors import UsageError
from conveyor.streams.catalogue import validate_stream
from conveyor.streams.dsl import AppNode, Destination, Option, is_stream_name, parse_stream
from conveyor.streams.errors import ExpressionError
from conveyor.streams.expressions import compile_expression
from conveyor.streams.runtime import LaunchSpec

__all__ = ["PlannedApp", "app_name", "parse_properties", "parse_python_uri", "plan_stream"]

_APP_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PROPERTY = re.compile(r"(deployer|app)\.([A-Za-z0-9_][A-Za-z0-9_$-]*|\*)\.([A-Za-z0-9_.-]+)")
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMG])B?", re.IGNORECASE)
_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3}
#: App properties that partition a destination (the consumer's spelling, then SCDF's producer's).
_PARTITION_KEYS = ("partition-key-expression", "producer.partitionKeyExpression")


@dataclass(frozen=True)
class PlannedApp:
    """One app of a stream, as the platform runs it."""

    #: The platform app's name, ``<stream>-<label>``.
    name: str
    #: The app's label in the stream (its name when it has no label).
    label: str
    launch: LaunchSpec
    instances: int = 1
    memory: int | None = None
    #: For an ``http`` source: the router path that reaches it.
    route: str | None = None
    #: The user app (``conveyor app register``) this one runs, if it is one.
    user_app: str | None = None
    #: Scaling on consumer lag: messages waiting per instance, and the bounds of the count.
    lag_target: int | None = None
    min_count: int = 1
    max_count: int = 1
    #: ``breach-duration`` and ``cool-down`` of that scaling, as written (``10s``), if given.
    lag_timing: Mapping[str, str] = field(default_factory=dict)


def parse_properties(text: str) -> dict[str, str]:
    """``"deployer.score.count=2,app.log.level=WARN"`` → a dict; UsageError names a bad one."""
    properties: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not _PROPERTY.fullmatch(key):
            raise UsageError(
                f"{item!r} is not a deployment property; use deployer.<app>.count=N, "
                "deployer.<app>.memory=512M or app.<app>.<option>=<value>"
            )
        properties[key] = value.strip()
    return properties


def plan_stream(
    name: str,
    definition: str,
    *,
    binder: str = "embedded",
    properties: Mapping[str, str] | None = None,
    registered: Mapping[str, str] | None = None,
) -> list[PlannedApp]:
    """The apps that run stream ``name``; DslError or UsageError if it cannot run.

    ``registered`` maps user app names to their ``python:module:function`` URIs: such an
    app runs as the ``python`` processor calling that function.
    """
    registered = dict(registered or {})
    if not is_stream_name(name):
        raise UsageError(
            f"{name!r} is not a valid stream name; use a letter, then letters, digits, '_' "
            "or '-' (at most 42 characters)"
        )
    properties = dict(properties or {})
    tree = parse_stream(definition)
    if tree.unbound:
        raise UsageError(
            f"stream {name!r} joins its apps with '||' (apps not wired to each other), which "
            "Conveyor's apps cannot run: join them with '|', or give each app its own "
            "destinations in streams of their own (`app1 > :a`, `:a > app2`)"
        )
    group = _source_group(name, tree.source)
    if tree.sink is not None and tree.sink.options:
        raise UsageError(
            f"stream {name!r} gives options to its output destination :{tree.sink.name}; "
            "Conveyor takes none there (write them on the app before it)"
        )
    if not tree.apps:
        raise UsageError(
            f"stream {name!r} only bridges :{tree.source.name if tree.source else '?'} to "
            f":{tree.sink.name if tree.sink else '?'}; add an app between them "
            "(for example `:a > transform > :b`)"
        )
    labels = [node.reference for node in tree.apps]
    unknown = {
        match[2]
        for key in properties
        if (match := _PROPERTY.fullmatch(key)) and match[2] != "*" and match[2] not in labels
    }
    if unknown:
        raise UsageError(
            f"deployment properties name {', '.join(sorted(unknown))}, which stream {name!r} "
            f"does not have (its apps: {', '.join(labels)})"
        )
    keys = _partition_keys(properties, labels)
    nodes = [
        _as_registered(_with_app_properties(node, properties), registered) for node in tree.apps
    ]
    validated = validate_stream(replace(tree, apps=tuple(nodes)), definition)
    planned: list[PlannedApp] = []
    for i, item in enumerate(validated):
        label = labels[i]
        platform_name = app_name(name, label)
        input_dest = (
            f"{name}.{labels[i - 1]}" if i > 0 else (tree.source.name if tree.source else None)
        )
        last = i == len(validated) - 1
        output_dest = (tree.sink.name if tree.sink else None) if last else f"{name}.{label}"
        count = _count(properties, label)
        launch = LaunchSpec(
            app=item.node.name,
            options=item.node.option_map(),
            binder=binder,
            input=input_dest,
            output=output_dest,
            group=group if i == 0 else name,
            stream=name,
            label=label,
            instance_count=count,
            input_partitioned=i in keys,
            partition_key=keys.get(i + 1),
            partition_count=_count(properties, labels[i + 1]) if i + 1 in keys else 1,
        )
        route = None
        if item.node.name == "http" and input_dest is None:
            route = str(item.options.get("path") or "/")
        planned.append(
            PlannedApp(
                name=platform_name,
                label=label,
                launch=launch,
                instances=count,
                memory=_memory(properties, label),
                route=route,
                user_app=tree.apps[i].name if tree.apps[i].name in registered else None,
                **_lag_scaling(properties, label, count, launch),
            )
        )
    return planned


def app_name(stream: str, label: str) -> str:
    """The platform app that runs app ``label`` of ``stream``: ``<stream>-<label>`` as a DNS label.

    >>> app_name("Fraud_Check", "score_2")
    'fraud-check-score-2'
    """
    candidate = f"{stream}-{label}".lower().replace("_", "-")
    if not _APP_NAME.fullmatch(candidate):
        raise UsageError(
            f"app {label!r} of stream {stream!r} cannot name a platform app ({candidate}); "
            "use letters, digits, '_' and '-' in labels, ending with a letter or digit, "
            "and keep stream name and label within 62 characters"
        )
    return candidate


def _source_group(stream: str, source: Destination | None) -> str:
    """The consumer group on the input destination: ``--group`` there, else the stream's name."""
    if source is None or not source.options:
        return stream
    extra = sorted(set(source.option_map()) - {"group"})
    if extra:
        raise UsageError(
            f"stream {stream!r} gives :{source.name} the option(s) "
            f"{', '.join('--' + k for k in extra)}; an input destination takes only --group"
        )
    return source.option_map()["group"]


def parse_python_uri(uri: str) -> str:
    """``python:module.path:function`` → ``module.path:function`` (UsageError if malformed)."""
    scheme, _, target = uri.partition(":")
    module, _, function = target.partition(":")
    if scheme != "python" or not _DOTTED.fullmatch(module) or not function.isidentifier():
        raise UsageError(
            f"{uri!r} is not an app URI; use python:<module>:<function>, "
            "for example python:mypkg.enrich:handle"
        )
    return target


def _as_registered(node: AppNode, registered: Mapping[str, str]) -> AppNode:
    uri = registered.get(node.name)
    if uri is None:
        return node
    options = (Option("function", parse_python_uri(uri), node.position), *node.options)
    return replace(node, name="python", label=node.reference, options=options)


def _lookup(properties: Mapping[str, str], kind: str, label: str, key: str) -> str | None:
    return properties.get(f"{kind}.{label}.{key}", properties.get(f"{kind}.*.{key}"))


def _partition_keys(properties: Mapping[str, str], labels: list[str]) -> dict[int, str]:
    """Which apps read a partitioned input (by position), and the key expression of each."""
    keys: dict[int, str] = {}
    for key, value in properties.items():
        match = _PROPERTY.fullmatch(key)
        if not match or match[1] != "app" or match[3] not in _PARTITION_KEYS:
            continue
        if match[2] == "*":
            raise UsageError(f"{key}: name the app whose input is partitioned, not '*'")
        index = labels.index(match[2]) + (match[3] == "producer.partitionKeyExpression")
        if not 0 < index < len(labels):
            raise UsageError(
                f"{key}: {match[2]!r} has no app of this stream "
                f"{'after' if index else 'before'} it to partition for"
            )
        try:
            compile_expression(value)
        except ExpressionError as exc:
            raise UsageError(f"{key}={value!r}: {exc}") from None
        keys[index] = value
    return keys


def _with_app_properties(node: AppNode, properties: Mapping[str, str]) -> AppNode:
    extra: dict[str, str] = {}
    for key, value in properties.items():
        match = _PROPERTY.fullmatch(key)
        if match and match[3] in _PARTITION_KEYS:
            continue  # a property of the stream's wiring, not an option of the app
        if match and match[1] == "app" and match[2] in ("*", node.reference):
            extra[match[3]] = value
    if not extra:
        return node
    options = {o.key: o for o in node.options}
    for key, value in extra.items():
        options[key] = Option(key, value, node.position)
    return replace(node, options=tuple(options.values()))


def _count(properties: Mapping[str, str], label: str) -> int:
    raw = _lookup(properties, "deployer", label, "count")
    if raw is None:
        return 1
    if not raw.isdigit() or not 0 < int(raw) <= 64:
        raise UsageError(f"deployer.{label}.count={raw!r}: expected a whole number from 1 to 64")
    return int(raw)


def _lag_scaling(
    properties: Mapping[str, str], label: str, count: int, launch: LaunchSpec
) -> dict[str, Any]:
    """``lag_target``, ``min_count``, ``max_count``, ``lag_timing`` from ``deployer.<label>.*``."""
    raw = _lookup(properties, "deployer", label, "autoscale.lag-target")
    bounds = {
        key: _lookup(properties, "deployer", label, key) for key in ("min-count", "max-count")
    }
    if raw is None:
        given = [f"deployer.{label}.{key}" for key, value in bounds.items() if value is not None]
        if given:
            raise UsageError(
                f"{', '.join(given)} without deployer.{label}.autoscale.lag-target: "
                "give the lag per instance to scale on, or use deployer.<app>.count"
            )
        return {}
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(
            f"deployer.{label}.autoscale.lag-target={raw!r}: expected a whole number of "
            "messages above 0"
        )
    if launch.input is None:
        raise UsageError(
            f"deployer.{label}.autoscale.lag-target: {label!r} is a source; only an app "
            "with an input has a consumer lag to scale on"
        )
    if launch.input_partitioned:
        raise UsageError(
            f"deployer.{label}.autoscale.lag-target: {label!r} reads a partitioned input, "
            "one partition per instance; give it a fixed deployer.<app>.count"
        )
    low, high = (
        int(value) if value is not None and value.isdigit() else value
        for value in (bounds["min-count"], bounds["max-count"])
    )
    for key, value in (("min-count", low), ("max-count", high)):
        if value is not None and (not isinstance(value, int) or not 0 < value <= 64):
            raise UsageError(
                f"deployer.{label}.{key}={value!r}: expected a whole number from 1 to 64"
            )
    low = low if isinstance(low, int) else 1
    high = high if isinstance(high, int) else max(low, count)
    if low > high:
        raise UsageError(
            f"deployer.{label}.min-count={low} is more than deployer.{label}.max-count={high}"
        )
    timing = {
        key: value
        for key in ("breach-duration", "cool-down")
        if (value := _lookup(properties, "deployer", label, f"autoscale.{key}")) is not None
    }
    return {"lag_target": int(raw), "min_count": low, "max_count": high, "lag_timing": timing}


def _memory(properties: Mapping[str, str], label: str) -> int | None:
    raw = _lookup(properties, "deployer", label, "memory")
    if raw is None:
        return None
    match = _SIZE.fullmatch(raw.strip())
    if match is None:
        raise UsageError(f"deployer.{label}.memory={raw!r}: expected a size like 512M or 1G")
    return int(float(match[1]) * _UNITS[match[2].upper()])
