"""The app manifest: ``conveyor.yml`` (or CF's ``manifest.yml``) read into typed app specs.

Cloud Foundry in spirit: each entry of ``applications`` is a model app
(``model: run:3f2a9c/model``) or a command app (``command`` run in ``path``,
staged from ``requirements``), with ``instances``, ``memory``, ``env``,
``routes``, ``health-check``, ``readiness-check``, ``services`` and ``autoscaling``
(:mod:`.manifest_scaling`). Walking the composed YAML nodes
rather than loaded values keeps every value's position.

Cloud Foundry's own attributes are read as CF documents them (``disk_quota``,
``health-check-type``, ``timeout``, ``routes: [{route: host/path}]``,
``no-route``, ``random-route``, ``processes``, services with ``parameters`` ...);
those without a Conveyor meaning (``buildpacks``, ``stack``) are accepted and
listed in :attr:`Manifest.ignored`. Without ``requirements`` or ``command`` the
app's folder is searched as a buildpack would (:mod:`.detect`).

Every error names the file, line, column and field, for example
``conveyor.yml:7:16: applications[1].instances: expected a whole number ≥ 0, got 'two'``,
and all of a manifest's errors are reported at once, one per line.
The apps are :class:`~conveyor.platform.spec.AppSpec` values, the shape a push
sends and a revision keeps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

import yaml  # type: ignore[import-untyped]
from yaml.nodes import MappingNode, Node, ScalarNode  # type: ignore[import-untyped]

from conveyor.errors import UsageError
from conveyor.platform.detect import detect_requirements, read_procfile
from conveyor.platform.errors import ManifestError
from conveyor.platform.health import CHECK_TYPES, ENDPOINT_TYPES, CheckType
from conveyor.platform.manifest_canary import read_canary
from conveyor.platform.manifest_routes import NAME as _NAME
from conveyor.platform.manifest_routes import RouteReader
from conveyor.platform.manifest_scaling import read_autoscaling
from conveyor.platform.nodes import TAG, At
from conveyor.platform.spec import (
    ENV_KEY,
    MAX_INSTANCES,
    SERVICE_NAME,
    AppSpec,
    HealthCheckSpec,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["MANIFEST_NAMES", "Manifest", "find_manifest", "load_manifest", "parse_manifest"]

_MAX_BYTES = 1024 * 1024  # a manifest is a page of YAML; anything bigger is a mistake

#: The names a manifest goes by, looked for in this order.
MANIFEST_NAMES = ("conveyor.yml", "manifest.yml", "manifest.yaml")
_APP_KEYS = (
    "name", "model", "path", "command", "requirements", "instances", "memory", "env",
    "routes", "health-check", "readiness-check", "services", "autoscaling", "canary",
    "follow-alias",
)  # fmt: skip
#: Cloud Foundry's attributes with a Conveyor meaning (the health-check ones are below).
_CF_KEYS = (
    "disk_quota", "disk-quota", "timeout", "no-route", "random-route", "default-route",
    "processes", *(f"{kind}-{key}" for kind in ("health-check", "readiness-health-check")
                   for key in ("type", "http-endpoint", "invocation-timeout", "interval")),
)  # fmt: skip
#: Cloud Foundry's attributes with no Conveyor meaning: accepted, and named in one list.
_IGNORED = {
    "buildpacks": "buildpacks (Conveyor stages with uv)",
    "buildpack": "buildpack (Conveyor stages with uv)",
    "stack": "stack",
    "metadata": "metadata",
    "log-rate-limit-per-second": "log-rate-limit-per-second",
}
#: Cloud Foundry's attributes Conveyor cannot honour: an app relying on them would not run.
_REFUSED = {
    "docker": "Conveyor runs an app from its source folder; it does not run docker images",
    "sidecars": "Conveyor runs one command per app; give each sidecar its own app",
}
_PROCESS_KEYS = (
    "type", "command", "instances", "memory", "disk_quota", "disk-quota", "timeout",
    *(key for key in _CF_KEYS if "health-check" in key), "log-rate-limit-per-second",
)  # fmt: skip
_CHECK_KEYS = ("type", "endpoint", "timeout", "interval", "invocation-timeout")
_SERVICE_KEYS = ("name", "parameters", "binding_name")
#: A CF health-check attribute's suffix -> the key of a ``health-check`` block.
_CF_CHECK = {
    "type": "type",
    "http-endpoint": "endpoint",
    "invocation-timeout": "invocation-timeout",
    "interval": "interval",
}


_CHECK = HealthCheckSpec()
_EMPTY: Mapping[str, str] = MappingProxyType({})
#: Service names, and binding parameters by service.
_Bound = tuple[tuple[str, ...], dict[str, "Mapping[str, Any]"]]


@dataclass(frozen=True)
class Manifest:
    """A whole manifest: where it came from and its apps, in file order."""

    source: str
    applications: tuple[AppSpec, ...]
    #: Attributes accepted without effect, each once: ``buildpacks (Conveyor stages with uv)``.
    ignored: tuple[str, ...] = ()
    #: The entry each extra process app came from (``my-app-worker`` -> ``my-app``).
    entries: Mapping[str, str] = field(default_factory=dict)

    def selected(self, names: Iterable[str]) -> list[AppSpec]:
        """The apps ``names`` asks for: by their own name or their entry's (all its processes)."""
        wanted = set(names)
        return [
            app
            for app in self.applications
            if app.name in wanted or self.entries.get(app.name) in wanted
        ]

    def app(self, name: str) -> AppSpec:
        for app in self.applications:
            if app.name == name:
                return app
        raise KeyError(name)


def find_manifest(folder: Path | str = ".") -> Path:
    """The manifest in ``folder``: ``conveyor.yml``, else Cloud Foundry's ``manifest.yml``."""
    folder = Path(folder)
    for name in MANIFEST_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise ManifestError(
        f"{folder}: no manifest ({', '.join(MANIFEST_NAMES)})",
        hint="Run conveyor push in the folder holding the manifest, or pass -f PATH.",
    )


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
    """Validate manifest ``text``; errors (all of them, one per line) name ``source_name``.

    With ``base_dir`` app paths are resolved against it and must exist inside
    it, and app folders are searched for requirements and a Procfile; without,
    paths are only checked not to climb out of it.
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
    apps: list[AppSpec] = []
    reader.attempt(None, _read_apps, reader, root, apps)
    if reader.errors:
        raise ManifestError("\n".join(reader.errors))
    return Manifest(
        source_name, tuple(apps), tuple(dict.fromkeys(reader.ignored)), dict(reader.entries)
    )


def _read_apps(reader: _Reader, root: Node, apps: list[AppSpec]) -> None:
    """Append the apps of the manifest ``root`` to ``apps``, recording every error on the way."""
    top = reader.mapping(At(root, ""), ("applications", "version"))
    if "version" in top:
        reader.attempt(None, reader.version, top["version"])
    if "applications" not in top:
        reader.fail(At(root, "applications"), "missing; list the apps under 'applications:'")
    items = reader.sequence(top["applications"], "a list of apps")
    if not items:
        reader.fail(top["applications"], "lists no apps")
    for item in items:
        found: list[tuple[AppSpec, At]] = reader.attempt([], reader.app, item)
        for app, at in found:
            reader.attempt(None, _unique, reader, apps, app, at)
            apps.append(app)


def _unique(reader: _Reader, apps: list[AppSpec], app: AppSpec, at: At) -> None:
    for other in apps:
        if other.name == app.name:
            reader.fail(at, f"{app.name!r} is already the name of the app on line {other.line}")


class _Reader(RouteReader):
    """Walks the composed YAML nodes, so every value still knows where it was written.

    An error is recorded and the value it concerns dropped (:meth:`attempt`), so one
    pass reports every mistake of the manifest.
    """

    def __init__(self, source: str, base_dir: Path | None) -> None:
        super().__init__(source)
        self.base_dir = base_dir
        self.ignored: list[str] = []
        self.entries: dict[str, str] = {}

    def version(self, at: At) -> None:
        if self.scalar(at, "1") != 1:
            self.fail(at, f"only manifest version 1 exists, got {self.got(at)}")

    def app(self, at: At) -> list[tuple[AppSpec, At]]:
        """The app an entry describes, and one more per extra ``processes`` type."""
        keys = self.mapping(
            at,
            _APP_KEYS + _CF_KEYS + tuple(_IGNORED) + tuple(_REFUSED),
            listed=(*_APP_KEYS, "or a Cloud Foundry attribute"),
        )
        self.ignored.extend(reason for key, reason in _IGNORED.items() if key in keys)
        for key, why in _REFUSED.items():
            if key in keys:
                self.note(keys[key], why)
        if "name" not in keys:
            self.fail(at, "missing 'name'")
        name = self.attempt("", self.app_name, keys["name"])  # go on: report the rest too
        processes: dict[str, dict[str, At]] = self.attempt({}, self.processes, keys)
        web = processes.get("web", {})
        model = command = path = requirements = None
        procfile: dict[str, str] = {}
        options: dict[str, Any] = {}
        if "model" in keys:
            if "command" in keys or processes:
                self.fail(at, "give exactly one of 'model' (a model app) or 'command'")
            for extra in ("path", "requirements"):
                if extra in keys:
                    self.note(keys[extra], "only for command apps; a model app runs its model")
            model = self.attempt(None, self.model, keys["model"])
            if "follow-alias" in keys and self.attempt(False, self.flag, keys["follow-alias"]):
                if model is not None and not (model.startswith("models:/") and "@" in model):
                    self.note(keys["follow-alias"], "only for 'model: models:/<name>@<alias>'")
                options = {"follow_alias": True}
        else:
            if "follow-alias" in keys:
                self.note(keys["follow-alias"], "only for 'model: models:/<name>@<alias>'")
            given = "path" in keys
            path = self.folder(keys.get("path") or At(at.node, f"{at.field}.path"), given)
            procfile = self.procfile(at, path)
            if "requirements" in keys:
                requirements = self.attempt(None, self.requirements, keys["requirements"], path)
            elif self.base_dir is not None:
                requirements = detect_requirements(path)
            if "command" in web:
                command = self.text(web["command"], "a command line")
            elif "command" in keys:
                command = self.attempt("?", self.text, keys["command"], "a command line")
            elif "web" in procfile:
                command = procfile["web"]
            elif not processes:
                self.fail(at, "give exactly one of 'model' (a model app) or 'command' "
                          "(or a Procfile with a 'web:' line in the app's folder)")  # fmt: skip
        unbound: _Bound = ((), {})
        bound = self.attempt(unbound, self.services, keys)
        services, parameters = bound
        spec = AppSpec(
            name=name,
            model=model,
            command=command,
            path=path,
            requirements=requirements,
            env=self.attempt(_EMPTY, self.env, keys["env"]) if "env" in keys else _EMPTY,
            routes=self.attempt(None, self.routes, keys, name),
            readiness_check=self.attempt(None, self.readiness, keys),
            canary=self.attempt(None, read_canary, self, keys["canary"])
            if "canary" in keys
            else None,
            services=services,
            service_parameters=MappingProxyType(parameters),
            autoscaling=self.attempt(None, read_autoscaling, self, keys["autoscaling"])
            if "autoscaling" in keys
            else None,
            options=MappingProxyType(options),
            line=at.node.start_mark.line + 1,
            **self.sizing({**keys, **web}),
        )
        if not name:
            return []
        apps = [] if command is None and model is None else [(spec, keys["name"])]
        for kind, entry in processes.items():
            if kind == "web":
                continue
            if not _NAME.fullmatch(f"{name}-{kind}"):
                self.note(entry["type"], f"the app {name}-{kind} it makes is not a valid name; "
                          "keep the app's name and the type within 63 characters")  # fmt: skip
                continue
            if "command" not in entry and kind not in procfile:
                self.note(entry["type"], f"process {kind!r} needs 'command' (or a Procfile line "
                          f"'{kind}: ...')")  # fmt: skip
                continue
            worker = AppSpec(
                name=f"{name}-{kind}",
                command=self.text(entry["command"], "a command line")
                if "command" in entry
                else procfile[kind],
                path=path,
                requirements=requirements,
                env=spec.env,
                routes=(),  # as in Cloud Foundry, only the web process is routed
                services=services,
                service_parameters=spec.service_parameters,
                line=entry["type"].node.start_mark.line + 1,
                **self.sizing(entry),
            )
            apps.append((worker, entry["type"]))
            self.entries[worker.name] = name
        return apps

    def app_name(self, at: At) -> str:
        name = self.text(at, "an app name")
        if not _NAME.fullmatch(name):
            self.fail(at, f"{name!r} is not a valid app name; use 1-63 lower-case "
                      "letters, digits and '-', starting and ending with a letter or digit "
                      "(it becomes a host name)")  # fmt: skip
        return name

    def sizing(self, keys: Mapping[str, At]) -> dict[str, Any]:
        """``instances``, ``memory``, ``disk`` and the health check of an app or a process."""
        result: dict[str, Any] = {}
        if "instances" in keys:
            result["instances"] = self.attempt(1, self.instances, keys["instances"])
        for size, names in (("memory", ("memory",)), ("disk", ("disk_quota", "disk-quota"))):
            for key in names:
                if key in keys:
                    result[size] = self.attempt(None, self.size, keys[key])
        result["health_check"] = self.attempt(_CHECK, self.liveness, keys)
        return result

    def liveness(self, keys: Mapping[str, At]) -> HealthCheckSpec:
        return self.either(keys, "health-check", "health-check") or _CHECK

    def readiness(self, keys: Mapping[str, At]) -> HealthCheckSpec | None:
        return self.either(keys, "readiness-check", "readiness-health-check")

    def either(self, keys: Mapping[str, At], block: str, prefix: str) -> HealthCheckSpec | None:
        """A check from Conveyor's ``block`` or from CF's ``<prefix>-*`` keys (not both)."""
        cf = {ours: keys[f"{prefix}-{theirs}"] for theirs, ours in _CF_CHECK.items()
              if f"{prefix}-{theirs}" in keys}  # fmt: skip
        if "timeout" in keys and block == "health-check":  # CF: seconds to the first pass
            cf["timeout"] = keys["timeout"]
        if block in keys:
            if cf:
                self.fail(next(iter(cf.values())), f"give either a '{block}:' block or Cloud "
                          f"Foundry's {prefix}-* keys, not both")  # fmt: skip
            return self.check(keys[block])
        return self.check_keys(cf, cf=True) if cf else None

    def processes(self, keys: Mapping[str, At]) -> dict[str, dict[str, At]]:
        """Cloud Foundry's ``processes``: each type's keys, by type."""
        if "processes" not in keys:
            return {}
        result: dict[str, dict[str, At]] = {}
        for item in self.sequence(keys["processes"], "a list of processes"):
            entry = self.attempt(None, self.mapping, item, _PROCESS_KEYS)
            if entry is None:
                continue
            if "type" not in entry:
                self.note(item, "missing 'type' (web, worker ...)")
                continue
            kind = self.attempt("", self.text, entry["type"], "a type")
            if kind and not _NAME.fullmatch(kind):
                self.note(entry["type"], f"{kind!r} is not a valid process type; use "
                          "lower-case letters, digits and '-'")  # fmt: skip
            elif kind in result:
                self.note(entry["type"], f"process type {kind!r} is given twice")
            elif kind:
                if "log-rate-limit-per-second" in entry:
                    self.ignored.append(_IGNORED["log-rate-limit-per-second"])
                result[kind] = entry
        return result

    def procfile(self, at: At, folder: Path) -> dict[str, str]:
        if self.base_dir is None:
            return {}
        try:
            return read_procfile(folder)
        except ManifestError as error:
            self.note(at, str(error))
            return {}

    def instances(self, at: At) -> int:
        count = int(self.number(at, whole=True))
        if not 0 <= count <= MAX_INSTANCES:
            self.fail(at, f"expected 0 to {MAX_INSTANCES} instances, got {count}")
        return count

    def model(self, at: At) -> str:
        uri = self.text(at, "a model reference")
        if uri.startswith("run:"):
            run_id, sep, model_name = uri[4:].partition("/")
            if not (run_id and sep and model_name) or "/" in model_name:
                self.fail(at, f"{uri!r} is not a run model; the form is run:<run-id>/<model>")
            return uri
        if uri.startswith("models:/"):
            from conveyor.repro.registered import parse_models_uri

            try:
                parse_models_uri(uri)
            except UsageError as exc:
                self.fail(at, exc.message)
            return uri
        if self.base_dir is None:
            return uri
        target = (self.base_dir / uri).expanduser()
        if not target.exists():
            self.fail(at, f"no model file or folder {str(target)!r}")
        return str(target.resolve())

    def folder(self, at: At, given: bool) -> Path:
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

    def requirements(self, at: At, folder: Path) -> PurePosixPath:
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

    def env(self, at: At) -> Mapping[str, str]:
        result: dict[str, str] = {}
        for key, value in self.mapping(at, ()).items():
            if not ENV_KEY.fullmatch(key):
                node = next(k for k, _ in at.node.value if k.value == key)  # point at the key
                self.note(At(node, value.field), "not a variable name; use A-Z, 0-9 and '_'")
            elif not isinstance(value.node, ScalarNode) or value.node.tag == TAG + "null":
                self.note(value, f"expected text, a number or true/false, got {self.got(value)}"
                          "; write '' for an empty value")  # fmt: skip
            else:
                result[key] = value.node.value  # as written: `yes` stays yes, 1.10 stays 1.10
        return MappingProxyType(result)

    def check(self, at: At) -> HealthCheckSpec:
        return self.check_keys(self.mapping(at, _CHECK_KEYS))

    def check_keys(self, keys: Mapping[str, At], *, cf: bool = False) -> HealthCheckSpec:
        types = ", ".join(CHECK_TYPES[:-1]) + f" or {CHECK_TYPES[-1]}"
        kind = self.text(keys["type"], types) if "type" in keys else "port"
        if cf and kind == "none":  # CF's older name for a process check
            kind = "process"
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
        timeout, interval, invocation = (
            float(self.number(keys[key], whole=False)) if key in keys else default
            for key, default in (
                ("timeout", _CHECK.timeout),
                ("interval", _CHECK.interval),
                ("invocation-timeout", _CHECK.invocation_timeout),
            )
        )
        return HealthCheckSpec(cast(CheckType, kind), endpoint, timeout, interval, invocation)

    def services(self, keys: Mapping[str, At]) -> _Bound:
        """Service names (written as names or as CF's mappings) and their binding parameters."""
        if "services" not in keys:
            return (), {}
        names: list[str] = []
        parameters: dict[str, Mapping[str, Any]] = {}
        for item in self.sequence(keys["services"], "a list of service names"):
            entry = item
            if isinstance(item.node, MappingNode):
                fields = self.mapping(item, _SERVICE_KEYS)
                if "name" not in fields:
                    self.note(item, "missing 'name'")
                    continue
                entry = fields["name"]
                if "binding_name" in fields:
                    self.ignored.append("services binding_name")
            service = self.attempt("", self.text, entry, "a service name")
            if service and not SERVICE_NAME.fullmatch(service):
                self.note(entry, f"{service!r} is not a valid service name")
            elif service in names:
                self.note(entry, f"{service!r} is listed twice")
            elif service:
                names.append(service)
                if entry is not item and "parameters" in fields:
                    parameters[service] = self.attempt({}, self.parameters, fields["parameters"])
        return tuple(names), parameters

    def parameters(self, at: At) -> Mapping[str, Any]:
        if not isinstance(at.node, MappingNode):
            self.fail(at, f"expected a mapping, got {self.got(at)}")
        try:
            value = self.constructor.construct_object(at.node, deep=True)
            json.dumps(value, allow_nan=False)
        except (yaml.YAMLError, TypeError, ValueError) as error:
            self.fail(at, f"expected JSON-like values (text, numbers, lists, mappings): {error}")
        return MappingProxyType(dict(value))
