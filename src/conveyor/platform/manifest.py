"""The app manifest: ``conveyor.yml`` read into typed, validated app specs.

Cloud Foundry in spirit: each entry of ``applications`` is a model app
(``model: run:3f2a9c/model``) or a command app (``command`` run in ``path``,
staged from ``requirements``), with ``instances``, ``memory``, ``env``,
``routes``, ``health-check``, ``readiness-check`` and ``services``. Walking the composed YAML nodes
rather than loaded values keeps every value's position.

Every error names the file, line, column and field, for example
``conveyor.yml:7:16: applications[1].instances: expected a whole number ≥ 0, got 'two'``.
The apps are :class:`~conveyor.platform.spec.AppSpec` values, the shape a push
sends and a revision keeps.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple, NoReturn, cast

import yaml  # type: ignore[import-untyped]
from yaml.constructor import SafeConstructor  # type: ignore[import-untyped]
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode  # type: ignore[import-untyped]

from conveyor.platform.errors import ManifestError
from conveyor.platform.health import CHECK_TYPES, ENDPOINT_TYPES, CheckType
from conveyor.platform.spec import (
    ENV_KEY,
    MAX_INSTANCES,
    SERVICE_NAME,
    AppSpec,
    HealthCheckSpec,
    RouteSpec,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Manifest", "load_manifest", "parse_manifest"]

_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT])(?:IB?|B)?", re.IGNORECASE)  # 512M, 512MB, 512Mi
_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_PATH = re.compile(r"/|(/[^/\s?#]+)+")
_TAG = "tag:yaml.org,2002:"
_MAX_BYTES = 1024 * 1024  # a manifest is a page of YAML; anything bigger is a mistake

_APP_KEYS = (
    "name", "model", "path", "command", "requirements", "instances", "memory", "env",
    "routes", "health-check", "readiness-check", "services",
)  # fmt: skip
_ROUTE_KEYS = ("host", "path", "strip-prefix")
_CHECK_KEYS = ("type", "endpoint", "timeout", "interval")


_CHECK = HealthCheckSpec()


@dataclass(frozen=True)
class Manifest:
    """A whole manifest: where it came from and its apps, in file order."""

    source: str
    applications: tuple[AppSpec, ...]

    def app(self, name: str) -> AppSpec:
        for app in self.applications:
            if app.name == name:
                return app
        raise KeyError(name)


def load_manifest(path: Path | str) -> Manifest:
    """Read and validate the manifest at ``path``; app paths resolve against its folder."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_BYTES + 1)
    except OSError as error:
        raise ManifestError(
            f"{path}: cannot read the manifest ({error.strerror or error})",
            hint="Run conveyor push in the folder holding conveyor.yml, or pass -f PATH.",
        ) from None
    if len(data) > _MAX_BYTES:
        raise ManifestError(f"{path}: a manifest is at most 1 MiB; this one is larger")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ManifestError(f"{path}: not UTF-8 text (byte {error.start})") from None
    return parse_manifest(text, str(path), base_dir=path.parent)


def parse_manifest(text: str, source_name: str, *, base_dir: Path | None = None) -> Manifest:
    """Validate manifest ``text``; errors are reported against ``source_name``.

    With ``base_dir`` app paths are resolved against it and must exist inside
    it; without, they are only checked not to climb out of it.
    """
    reader = _Reader(source_name, base_dir)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source_name}:{mark.line + 1}:{mark.column + 1}" if mark else source_name
        what = " ".join(p for p in (error.problem, error.context and f"({error.context})") if p)
        raise ManifestError(f"{where}: invalid YAML: {what}") from None
    except yaml.YAMLError as error:
        raise ManifestError(f"{source_name}: invalid YAML: {error}") from None
    if root is None:
        raise ManifestError(f"{source_name}: the manifest is empty; it needs 'applications:'")
    top = reader.mapping(_At(root, ""), ("applications",))
    if "applications" not in top:
        reader.fail(_At(root, "applications"), "missing; list the apps under 'applications:'")
    items = reader.sequence(top["applications"], "a list of apps")
    if not items:
        reader.fail(top["applications"], "lists no apps")
    apps: list[AppSpec] = []
    for item in items:
        app = reader.app(item)
        for other in apps:
            if other.name == app.name:
                reader.fail(
                    reader.mapping(item, _APP_KEYS)["name"],
                    f"{app.name!r} is already the name of the app on line {other.line}",
                )
        apps.append(app)
    return Manifest(source_name, tuple(apps))


class _At(NamedTuple):
    """A YAML node and the field path that leads to it (``applications[1].instances``)."""

    node: Node
    field: str

    def item(self, index: int) -> _At:
        return _At(self.node.value[index], f"{self.field}[{index}]")


class _Reader:
    """Walks the composed YAML nodes, so every value still knows where it was written."""

    def __init__(self, source: str, base_dir: Path | None) -> None:
        self.source = source
        self.base_dir = base_dir
        self.constructor = SafeConstructor()
        self.flattened: dict[int, dict[str, _At]] = {}

    def fail(self, at: _At, message: str) -> NoReturn:
        mark = at.node.start_mark
        where = f"{self.source}:{mark.line + 1}:{mark.column + 1}:"
        raise ManifestError(f"{where} {at.field}: {message}" if at.field else f"{where} {message}")

    def got(self, at: _At) -> str:
        if isinstance(at.node, MappingNode | SequenceNode):
            return "a mapping" if isinstance(at.node, MappingNode) else "a list"
        return "nothing" if at.node.tag == _TAG + "null" else repr(at.node.value)

    def mapping(self, at: _At, allowed: tuple[str, ...]) -> dict[str, _At]:
        """The keys of a mapping; duplicates and keys outside ``allowed`` (when given) fail."""
        if not isinstance(at.node, MappingNode):
            self.fail(at, f"expected a mapping, got {self.got(at)}")
        if id(at.node) in self.flattened:  # the same node reached again through an alias
            return self.flattened[id(at.node)]
        name = f"{at.field}." if at.field else ""
        own: dict[str, Node] = {}
        for key, _ in at.node.value:
            text = "<<" if key.tag == _TAG + "merge" else self.text(_At(key, at.field), "a key")
            if text in own and text != "<<":
                first = own[text].start_mark.line + 1
                self.fail(_At(key, name + text), f"given twice (first on line {first})")
            own[text] = key
        try:  # YAML merge keys (<<: *defaults) are how CF manifests share settings
            self.constructor.flatten_mapping(at.node)
        except yaml.MarkedYAMLError as error:
            self.fail(at, f"cannot merge: {error.problem}")
        result: dict[str, _At] = {}
        for key, value in at.node.value:  # merged pairs come first: the mapping's own keys win
            text = self.text(_At(key, at.field), "a key")
            if allowed and text not in allowed:
                self.fail(_At(key, name + text), f"unknown key; valid keys: {', '.join(allowed)}")
            result[text] = _At(value, name + text)
        self.flattened[id(at.node)] = result
        return result

    def sequence(self, at: _At, what: str) -> list[_At]:
        if not isinstance(at.node, SequenceNode):
            self.fail(at, f"expected {what}, got {self.got(at)}")
        return [at.item(index) for index in range(len(at.node.value))]

    def scalar(self, at: _At, what: str) -> object:
        if not isinstance(at.node, ScalarNode):
            self.fail(at, f"expected {what}, got {self.got(at)}")
        if at.node.tag == _TAG + "str":
            return cast(str, at.node.value)
        if at.node.tag not in (_TAG + "int", _TAG + "float", _TAG + "bool", _TAG + "null"):
            self.fail(at, f"expected {what}, got a value tagged {at.node.tag}")
        return cast(object, self.constructor.construct_object(at.node))

    def text(self, at: _At, what: str = "text") -> str:
        value = self.scalar(at, what)
        if not isinstance(value, str):
            self.fail(at, f"expected {what}, got {self.got(at)}; quote it")
        if not value.strip():
            self.fail(at, f"expected {what}, got an empty string")
        return value

    def number(self, at: _At, *, whole: bool) -> float:
        what = "a whole number ≥ 0" if whole else "a number of seconds > 0"
        value = self.scalar(at, what)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)  # .nan and .inf would disable a health check's deadline
            or (whole and (not isinstance(value, int) or value < 0))
            or (not whole and value <= 0)
        ):
            self.fail(at, f"expected {what}, got {self.got(at)}")
        return value

    def app(self, at: _At) -> AppSpec:
        keys = self.mapping(at, _APP_KEYS)
        if "name" not in keys:
            self.fail(at, "missing 'name'")
        name = self.text(keys["name"], "an app name")
        if not _NAME.fullmatch(name):
            self.fail(keys["name"], f"{name!r} is not a valid app name; use 1-63 lower-case "
                      "letters, digits and '-', starting and ending with a letter or digit "
                      "(it becomes a host name)")  # fmt: skip
        if ("model" in keys) == ("command" in keys):
            self.fail(at, "give exactly one of 'model' (a model app) or 'command'")
        model = command = path = requirements = None
        if "model" in keys:
            for extra in ("path", "requirements"):
                if extra in keys:
                    self.fail(keys[extra], "only for command apps; a model app runs its model")
            model = self.model(keys["model"])
        else:
            command = self.text(keys["command"], "a command line")
            path = self.folder(keys.get("path") or _At(at.node, f"{at.field}.path"), "path" in keys)
            if "requirements" in keys:
                requirements = self.requirements(keys["requirements"], path)
        routes = None
        if "routes" in keys:
            routes = tuple(map(self.route, self.sequence(keys["routes"], "a list of routes")))
        return AppSpec(
            name=name,
            model=model,
            command=command,
            path=path,
            requirements=requirements,
            instances=self.instances(keys["instances"]) if "instances" in keys else 1,
            memory=self.size(keys["memory"]) if "memory" in keys else None,
            env=self.env(keys["env"]) if "env" in keys else MappingProxyType({}),
            routes=routes,
            health_check=self.check(keys["health-check"]) if "health-check" in keys else _CHECK,
            readiness_check=self.check(keys["readiness-check"])
            if "readiness-check" in keys
            else None,
            services=self.services(keys["services"]) if "services" in keys else (),
            line=at.node.start_mark.line + 1,
        )

    def instances(self, at: _At) -> int:
        count = int(self.number(at, whole=True))
        if not 0 <= count <= MAX_INSTANCES:
            self.fail(at, f"expected 0 to {MAX_INSTANCES} instances, got {count}")
        return count

    def model(self, at: _At) -> str:
        uri = self.text(at, "a model reference")
        if uri.startswith("run:"):
            run_id, sep, model_name = uri[4:].partition("/")
            if not (run_id and sep and model_name) or "/" in model_name:
                self.fail(at, f"{uri!r} is not a run model; the form is run:<run-id>/<model>")
            return uri
        if self.base_dir is None:
            return uri
        target = (self.base_dir / uri).expanduser()
        if not target.exists():
            self.fail(at, f"no model file or folder {str(target)!r}")
        return str(target.resolve())

    def folder(self, at: _At, given: bool) -> Path:
        raw = self.text(at, "a folder") if given else "."  # else `at` is the app, for messages
        if self.base_dir is None:
            if PurePosixPath(raw).is_absolute() or ".." in PurePosixPath(raw).parts:
                self.fail(at, f"{raw!r} must stay inside the manifest's folder")
            return Path(raw)
        base = self.base_dir.resolve()
        target = (base / raw).resolve()
        if not target.is_relative_to(base):
            self.fail(at, f"{raw!r} leads outside the manifest's folder {str(base)!r}; "
                      "keep the app's source beside or below the manifest")  # fmt: skip
        if not target.is_dir():
            self.fail(at, f"{raw!r} is not an existing folder (looked for {str(target)!r})")
        return target

    def requirements(self, at: _At, folder: Path) -> PurePosixPath:
        raw = self.text(at, "a requirements file")
        relative = PurePosixPath(raw)
        if relative.is_absolute() or ".." in relative.parts:
            self.fail(at, f"{raw!r} must be a file inside the app's folder")
        if not (relative.suffix == ".txt" or relative.name in ("pyproject.toml", "uv.lock")):
            self.fail(at, f"{raw!r} is not a requirements *.txt, pyproject.toml or uv.lock")
        if self.base_dir is not None:
            target = (folder / relative).resolve()
            if not target.is_relative_to(folder.resolve()):  # a symlink that leads out
                self.fail(at, f"{raw!r} leads outside the app's folder (to {str(target)!r}); "
                          "keep the requirements file inside it")  # fmt: skip
            if not target.is_file():
                self.fail(at, f"no file {raw!r} in {str(folder)!r}")
        return relative

    def size(self, at: _At) -> int:
        value = self.scalar(at, "a size like 512M or 1G")
        match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None or float(match[1]) <= 0:
            unit = "; add a unit (K, M or G)" if type(value) is int else ""
            self.fail(at, f"expected a size like 512M or 1G, got {self.got(at)}{unit}")
        return int(float(match[1]) * _UNITS[match[2].upper()])

    def env(self, at: _At) -> Mapping[str, str]:
        result: dict[str, str] = {}
        for key, value in self.mapping(at, ()).items():
            if not ENV_KEY.fullmatch(key):
                node = next(k for k, _ in at.node.value if k.value == key)  # point at the key
                self.fail(_At(node, value.field), "not a variable name; use A-Z, 0-9 and '_'")
            if not isinstance(value.node, ScalarNode) or value.node.tag == _TAG + "null":
                self.fail(value, f"expected text, a number or true/false, got {self.got(value)}"
                          "; write '' for an empty value")  # fmt: skip
            result[key] = value.node.value  # as written: `yes` stays yes, 1.10 stays 1.10
        return MappingProxyType(result)

    def route(self, at: _At) -> RouteSpec:
        keys = self.mapping(at, _ROUTE_KEYS)
        host = path = None
        if "host" in keys:
            host = self.text(keys["host"], "a host name").lower()
            if len(host) > 253 or not all(_NAME.fullmatch(label) for label in host.split(".")):
                self.fail(keys["host"], f"{host!r} is not a valid host name")
        if "path" in keys:
            path = self.text(keys["path"], "a path")
            if not _PATH.fullmatch(path):
                self.fail(keys["path"], f"{path!r} must start with '/' and not end with one, "
                          "without spaces, '?' or '#' (for example /iris)")  # fmt: skip
        if host is None and path is None:
            self.fail(at, "a route needs a host, a path or both")
        flag = keys.get("strip-prefix")
        strip = self.scalar(flag, "true or false") if flag else False
        if flag and not isinstance(strip, bool):
            self.fail(flag, f"expected true or false, got {self.got(flag)}")
        return RouteSpec(host=host, path=path, strip_prefix=bool(strip))

    def check(self, at: _At) -> HealthCheckSpec:
        keys = self.mapping(at, _CHECK_KEYS)
        types = ", ".join(CHECK_TYPES[:-1]) + f" or {CHECK_TYPES[-1]}"
        kind = self.text(keys["type"], types) if "type" in keys else "port"
        if kind not in CHECK_TYPES:
            self.fail(keys["type"], f"expected {types}, got {kind!r}")
        endpoint = "/"
        if "endpoint" in keys:
            if kind not in ENDPOINT_TYPES:
                users = " or ".join(f"'type: {t}'" for t in sorted(ENDPOINT_TYPES))
                self.fail(keys["endpoint"], f"only used by {users}")
            endpoint = self.text(keys["endpoint"], "a path")
            if not endpoint.startswith("/"):
                self.fail(keys["endpoint"], f"{endpoint!r} must start with '/'")
        timeout, interval = (
            float(self.number(keys[key], whole=False)) if key in keys else default
            for key, default in (("timeout", _CHECK.timeout), ("interval", _CHECK.interval))
        )
        return HealthCheckSpec(cast(CheckType, kind), endpoint, timeout, interval)

    def services(self, at: _At) -> tuple[str, ...]:
        names: list[str] = []
        for item in self.sequence(at, "a list of service names"):
            service = self.text(item, "a service name")
            if not SERVICE_NAME.fullmatch(service):
                self.fail(item, f"{service!r} is not a valid service name")
            if service in names:
                self.fail(item, f"{service!r} is listed twice")
            names.append(service)
        return tuple(names)
