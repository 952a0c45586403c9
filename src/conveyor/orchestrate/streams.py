"""Streams on the platform: each app of a stream is a platform app, ``<stream>-<label>``.

The stream deployer sits above both the platform and the streams package and
uses the platform only through its public surface (:mod:`conveyor.platform`):
it pushes apps of the ``stream`` kind (:mod:`.stream_kind`) and reads their
specs back. Its own records live in :mod:`conveyor.store.streams`.

A stream is created (its definition parsed and checked against the catalogue),
then deployed with properties; every deployment is a version that ``history``
lists and ``rollback`` returns to. Deploying pushes one platform app per
stream app, sinks first so that consumers exist before producers publish;
``update`` pushes them again with the new properties, and each app rolls as
any push does: new instances start, become healthy, then the old ones drain
and stop. A message is acknowledged only after its output is published, so a
stopped instance's unacknowledged messages go to the group's next consumer:
nothing is lost, some may be processed twice (at-least-once).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.config import Settings, get_settings
from conveyor.errors import NotFoundError, UsageError
from conveyor.orchestrate.stream_kind import StreamKind
from conveyor.orchestrate.stream_lineage import StreamLineage
from conveyor.orchestrate.stream_sandbox import sandboxed
from conveyor.orchestrate.stream_secrets import hash_stored_tokens, url_sealer
from conveyor.platform import (
    AppSpec,
    AutoscalingSpec,
    Controller,
    DeployError,
    Progress,
    RouteSpec,
    Staging,
    check_upload_path,
    describe_app,
    files_digest,
)
from conveyor.repro.openlineage import Emitter
from conveyor.store.streams import StreamRepository
from conveyor.streams.binders import check_binder_url, partitioned_lag, shown_binder_url
from conveyor.streams.masking import (
    hash_definition,
    hash_properties,
    mask_definition,
    mask_options,
    mask_properties,
)

if TYPE_CHECKING:
    from conveyor.streams.binders import Binder
    from conveyor.streams.plan import PlannedApp

__all__ = ["StreamService"]

#: Files that make an uploaded user app's folder get an environment of its own.
_REQUIREMENTS = ("requirements.txt", "pyproject.toml")
_APP_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,40}[a-z0-9])?")
#: Seconds a stream app's lag must ask for another count, and between two changes.
_LAG_BREACH, _LAG_COOL_DOWN = "10s", "30s"


def _lag_scaling(app: PlannedApp) -> AutoscalingSpec | None:
    """The policy scaling ``app`` on its consumer lag, if its properties ask for one."""
    if app.lag_target is None:
        return None
    timing = {"breach-duration": _LAG_BREACH, "cool-down": _LAG_COOL_DOWN, **app.lag_timing}
    try:
        return AutoscalingSpec(
            min_instances=app.min_count,
            max_instances=app.max_count,
            target_lag=app.lag_target,
            breach_duration=timing["breach-duration"],
            cool_down=timing["cool-down"],
        )
    except ValueError as error:
        raise UsageError(f"deployer.{app.label}.autoscale.{error}") from None


class StreamService:
    """Stream definitions in the registry, deployed through the controller."""

    def __init__(
        self,
        controller: Controller,
        default_binder: str = "embedded",
        settings: Settings | None = None,
    ) -> None:
        self.controller = controller
        self.default_binder = default_binder
        self.settings = settings or get_settings()
        self.records = StreamRepository(controller.state.registry)
        self.lineage = StreamLineage(Emitter.from_settings(self.settings))
        controller.droplet_users.append(self._droplets_in_use)
        controller.autoscaling.lag = self._lag_of
        #: Seals URL options' passwords (a sql sink's --url) before the registry keeps them.
        self.seal = url_sealer(controller.state)
        hash_stored_tokens(controller.state, self.records)  # rows from before tokens were hashed

    # -- user apps ----------------------------------------------------------------

    def registered(self) -> dict[str, str]:
        """User apps by name: their ``python:module:function`` URIs."""
        return {app.name: app.uri for app in self.records.user_apps()}

    def _droplets_in_use(self) -> set[Path]:
        """Folders registered apps use: their unpacked files and staged environments."""
        used: set[Path] = set()
        for app in self.records.user_apps():
            if app.files:
                used.add(self.controller.dir / "stream-apps" / files_digest(app.files))
            for key in ("venv", "source"):
                if app.droplet and app.droplet.get(key):
                    used.add(Path(app.droplet[key]))
        return used

    def _user_app_env(self, name: str) -> dict[str, str]:
        """Where a user app's module and packages are: first its folder, last its droplet."""
        row = self.records.user_app(name)
        if row is None or not row.files:
            return {}
        env = {"PYTHONPATH": str(self.controller.dir / "stream-apps" / files_digest(row.files))}
        if row.droplet:
            sites = sorted(Path(row.droplet["venv"]).glob("lib/python*/site-packages"))
            env["CONVEYOR_EXTRA_PATH"] = os.pathsep.join(str(p) for p in sites)
        return env

    async def register(
        self,
        name: str,
        uri: str,
        files: Mapping[str, Mapping[str, Any]] | None,
        progress: Progress = lambda _m: None,
    ) -> dict[str, Any]:
        """Register a user app: a function, importable already or from uploaded files.

        Uploaded files with a ``requirements.txt`` (or ``pyproject.toml``) get a
        droplet staged like a push; its packages are added after the stream
        runtime's own, so where both have a package the runtime's version wins.
        """
        from conveyor.streams.catalogue import CATALOGUE
        from conveyor.streams.plan import parse_python_uri

        if not _APP_NAME.fullmatch(name):
            raise UsageError(
                f"{name!r} is not a valid app name; use lower-case letters, digits and '-'"
            )
        if any(spec.name == name for spec in CATALOGUE.values()):
            raise UsageError(f"{name!r} is a built-in app; register yours under another name")
        parse_python_uri(uri)
        for path, entry in (files or {}).items():
            check_upload_path(path)
            if not self.controller.artifacts.exists(str(entry.get("digest", ""))):
                raise UsageError(f"the file {path} of app {name!r} was not uploaded")
        droplet = None
        if files:
            target = self.controller.dir / "stream-apps" / files_digest(files)
            if not target.is_dir():
                await asyncio.to_thread(self.controller.droplets.materialise, files, target)
            requirements = next((r for r in _REQUIREMENTS if r in files), None)
            if requirements is not None:
                staging = Staging(self.controller.droplets, progress, lambda **_details: None)
                droplet = await self.controller.droplets.build(name, requirements, files, staging)
        self.records.save_user_app(name, uri, files, droplet)
        return {
            "name": name,
            "uri": uri,
            "files": len(files or {}),
            "environment": None if droplet is None else droplet["lock_digest"],
        }

    def unregister(self, name: str) -> None:
        self.records.delete_user_app(name)

    # -- operations ---------------------------------------------------------------

    def validate(self, name: str, definition: str) -> list[dict[str, Any]]:
        """The apps the definition makes (DslError/UsageError when it cannot run)."""
        from conveyor.streams.plan import plan_stream

        return [
            {
                "name": app.name,
                "label": app.label,
                "app": app.launch.app,
                "input": app.launch.input,
                "output": app.launch.output,
                "options": mask_options(app.launch.app, app.launch.options),
            }
            for app in plan_stream(name, definition, registered=self.registered())
        ]

    def create(self, name: str, definition: str) -> dict[str, Any]:
        apps = self.validate(name, definition)
        # The registry keeps no token nor URL password in clear.
        definition = hash_definition(definition, self.seal)
        self.records.create(name, definition)
        return {"name": name, "definition": mask_definition(definition), "apps": apps}

    def list_streams(self) -> list[dict[str, Any]]:
        return [
            {
                "name": r.name,
                "definition": mask_definition(r.definition),
                "status": r.status,
                "version": r.version,
            }
            for r in self.records.streams()
        ]

    async def deploy(
        self,
        name: str,
        properties: Mapping[str, str],
        binder: str | None,
        progress: Progress,
        *,
        description: str = "deploy",
        definition: str | None = None,
    ) -> dict[str, Any]:
        """Deploy (or update) the stream as a new version with ``properties``."""
        from conveyor.streams.plan import plan_stream

        row = self.records.stream(name)
        # Tokens as hashes from here on: in the apps' specs, the version, the stream's row.
        definition = hash_definition(definition or row.definition, self.seal)
        properties = hash_properties(definition, properties, self.seal)
        binder = binder or self._last_binder(name) or self.default_binder
        check_binder_url(binder)  # a typo fails here, not after instances crashed
        progress(f"Checking the binder {shown_binder_url(binder)}...")
        await asyncio.to_thread(self._reach_binder, binder)  # a broker down fails here too
        registered = self.registered()
        planned = plan_stream(
            name, definition, binder=binder, properties=properties, registered=registered
        )
        for app in planned:
            self._check_owner(name, app.name)
        rolled: list[tuple[str, int]] = []  # apps updated so far, with the revision they ran
        versions = self.records.versions(name)
        version = (versions[-1].version if versions else 0) + 1
        # Masked: the definition may hold credentials (a sql sink's URL, say).
        self.lineage.started(name, version, planned, binder, mask_definition(definition))
        for app in reversed(planned):  # sinks first: consumers exist before producers publish
            before = self.controller.state.find_app(app.name)
            env = {} if app.user_app is None else self._user_app_env(app.user_app)
            given = await asyncio.to_thread(
                sandboxed, app.launch.to_json(), env, self.settings, self.controller.run_model
            )
            spec = AppSpec(
                name=app.name,
                kind=StreamKind.name,
                env=given.env,
                memory=app.memory,
                routes=() if app.route is None else (RouteSpec(path=app.route),),
                autoscaling=_lag_scaling(app),
                options={
                    "stream_app": given.launch,
                    "stream": name,
                    "position": planned.index(app),
                    "read_only": given.read_only,
                    "read_write": given.read_write,
                },
            )
            progress(f"{app.name}: {app.launch.app}, {app.instances} instance(s)")
            try:
                await self.controller.push(spec, None, app.instances, progress)
            except Exception as failed:
                self.lineage.ended(name, version, "FAIL", str(failed))
                if row.status != "deployed":  # a first deploy that fails leaves nothing
                    await self._remove_apps(a.name for a in planned)
                else:  # an update that fails puts the apps it already rolled back as they were
                    for rolled_app, revision in rolled:
                        progress(f"{rolled_app}: back to revision {revision}")
                        if revision:
                            await self.controller.rollback(rolled_app, revision, progress)
                        else:
                            await self.controller.delete(rolled_app)
                raise
            rolled.append((app.name, before.revision if before is not None else 0))
        if row.status == "deployed" and row.version:
            self.lineage.ended(name, row.version, "COMPLETE")
        version = self.records.add_version(
            name,
            definition=definition,
            properties=properties,
            binder=binder,
            description=description,
        )
        self.records.set_status(name, "deployed", version=version, definition=definition)
        return {"name": name, "version": version, "apps": [a.name for a in planned]}

    def _check_owner(self, stream: str, app: str) -> None:
        """DeployError when platform app ``app`` exists and is not one of ``stream``'s apps.

        Stream names that differ only by case or '_' against '-' map to the same
        app names; deploying one must not take over the other's apps.
        """
        found = self.controller.state.find_app(app)
        if found is None or not found.revision:
            return
        spec = self.controller.spec(self.controller.state.revision(app, found.revision))
        owner = spec.options.get("stream") if spec.kind == StreamKind.name else None
        if owner != stream:
            what = f"stream {owner!r}" if owner else "an app pushed on its own"
            raise DeployError(
                f"stream {stream!r} needs the platform app {app!r}, which belongs to {what}",
                hint="Choose a stream name that differs by more than case or '_' and '-', "
                "or undeploy the other first.",
            )

    def check_binder(self, url: str | None) -> None:
        """UsageError (a 400) when ``url`` names no known binder; None means the default."""
        if url is not None:
            check_binder_url(url)

    def _reach_binder(self, url: str) -> None:
        """Open and close the binder: BinderError naming the URL when it does not answer."""
        from conveyor.streams.binders import open_binder

        if check_binder_url(url) == "embedded":
            return  # a file the apps create; nothing to reach
        open_binder(url, self.settings).close()

    def _last_binder(self, name: str) -> str | None:
        versions = self.records.versions(name)
        return versions[-1].binder if versions else None

    async def update(
        self, name: str, properties: Mapping[str, str], progress: Progress
    ) -> dict[str, Any]:
        if self.records.stream(name).status != "deployed":
            raise UsageError(f"stream {name!r} is not deployed; deploy it first")
        merged = {**self.records.versions(name)[-1].properties, **properties}
        return await self.deploy(name, merged, None, progress, description="update")

    async def rollback(self, name: str, version: int, progress: Progress) -> dict[str, Any]:
        target = next((v for v in self.records.versions(name) if v.version == version), None)
        if target is None:
            raise NotFoundError(
                f"stream {name!r} has no version {version}",
                hint=f"`conveyor stream history {name}` lists them.",
            )
        return await self.deploy(
            name,
            target.properties,
            target.binder,
            progress,
            description=f"rollback to {version}",
            definition=target.definition,
        )

    async def _remove_apps(self, names: Iterable[str]) -> None:
        for app in names:
            if self.controller.state.find_app(app) is not None:
                await self.controller.delete(app)

    async def undeploy(self, name: str) -> dict[str, Any]:
        row = self.records.stream(name)
        removed = []
        for app in self._apps_of(name):
            await self.controller.delete(app)
            removed.append(app)
        self.records.set_status(name, "undeployed")
        if row.status == "deployed" and row.version:
            self.lineage.ended(name, row.version, "COMPLETE")
        return {"name": name, "removed": removed}

    async def destroy(self, name: str) -> dict[str, Any]:
        result = await self.undeploy(name)
        self.records.delete(name)
        return result

    def _apps_of(self, name: str) -> list[str]:
        """The platform apps deployed for stream ``name``, in the order of its definition."""
        apps = []
        for app in self.controller.state.apps():
            spec = self.controller.spec(self.controller.state.revisions(app.name)[-1])
            if spec.kind == StreamKind.name and spec.options.get("stream") == name:
                apps.append((int(spec.options.get("position", 0)), app.name))
        return [app for _, app in sorted(apps)]

    def history(self, name: str) -> list[dict[str, Any]]:
        row = self.records.stream(name)
        return [
            {
                "version": v.version,
                "deployed": v.version == row.version and row.status == "deployed",
                "description": v.description,
                "properties": mask_properties(v.definition, v.properties),
                "binder": shown_binder_url(v.binder),
                "created_at": v.created_at,
                "definition": mask_definition(v.definition),
            }
            for v in self.records.versions(name)
        ]

    def info(self, name: str) -> dict[str, Any]:
        """The stream with, per app, its instances and the messages waiting on its input."""
        row = self.records.stream(name)
        apps = []
        names = self._apps_of(name)
        lag_by_app = self._lags(name, names) if row.status == "deployed" else {}
        for app in names:
            summary = describe_app(self.controller, app)
            launch = self._launch(app)
            apps.append(
                {
                    "name": app,
                    "app": launch["app"],
                    "state": summary["state"],
                    "instances": summary["instances"],
                    "running": summary["running"],
                    "input": launch.get("input"),
                    "output": launch.get("output"),
                    "lag": lag_by_app.get(app),
                    "routes": summary["routes"],
                    **self._counters(app),
                }
            )
        binder = self._last_binder(name)
        return {
            "name": name,
            "definition": mask_definition(row.definition),
            "status": row.status,
            "version": row.version,
            "binder": None if binder is None else shown_binder_url(binder),
            "apps": apps,
        }

    def _launch(self, app: str) -> Mapping[str, Any]:
        """The stream runtime's launch spec of one of the stream's apps."""
        launch: Mapping[str, Any] = self.controller.spec(
            self.controller.state.revisions(app)[-1]
        ).options["stream_app"]
        return launch

    def _counters(self, app: str) -> dict[str, Any]:
        """Messages received (a source: accepted), published and dead-lettered by the app's
        running instances, and the rate it published at, from each one's /status.

        They count since each instance started (a restart or an update starts them
        again at zero): ``counted_since`` is the earliest of those starts.
        """
        import json
        import urllib.request

        totals = {"received": 0, "published": 0, "dead_lettered": 0}
        rate = 0.0
        since: float | None = None
        now = time.time()
        for inst in self.controller.target.status(app):
            if inst.port is None or inst.state != "RUNNING":
                continue
            url = f"http://{inst.host}:{inst.port}/status"
            try:
                with urllib.request.urlopen(url, timeout=0.5) as response:
                    status = json.loads(response.read())
            except (OSError, ValueError):
                continue  # a busy instance may not answer
            for key in totals:
                totals[key] += int(status.get(key) or 0)
            started = float(status.get("counted_since") or inst.since)
            since = started if since is None else min(since, started)
            rate += int(status.get("published") or 0) / max(1.0, now - started)
        return {**totals, "published_per_second": round(rate, 1), "counted_since": since}

    def _lag_of(self, app: str, spec: AppSpec) -> int | None:
        """Messages waiting in the input of stream app ``app`` (for the autoscaler; a thread)."""
        from conveyor.streams.binders import open_binder

        launch = spec.options.get("stream_app") or {}
        stream = str(spec.options.get("stream") or "")
        versions = self.records.versions(stream) if stream else []
        if not launch.get("input") or not versions:
            return None
        try:
            binder = open_binder(versions[-1].binder, self.settings)
        except Exception:  # a broker that does not answer: no measure, no change
            return None
        try:
            return _input_lag(binder, launch, stream)
        except Exception:
            return None
        finally:
            binder.close()

    def _lags(self, name: str, apps: list[str]) -> dict[str, int | None]:
        from conveyor.config import get_settings
        from conveyor.streams.binders import open_binder

        versions = self.records.versions(name)
        if not versions:
            return {}
        lags: dict[str, int | None] = {}
        try:
            binder = open_binder(versions[-1].binder, get_settings())
        except Exception:  # info still answers when the broker does not
            return {}
        try:
            for app in apps:
                launch = self._launch(app)
                if launch.get("input"):
                    try:
                        lags[app] = _input_lag(binder, launch, name)
                    except Exception:
                        lags[app] = None
        finally:
            binder.close()
        return lags


def _input_lag(binder: Binder, launch: Mapping[str, Any], stream: str) -> int | None:
    """What the app's group has not acknowledged of its input (every partition of it)."""
    group = launch.get("group") or stream
    if launch.get("input_partitioned"):
        count = int(launch.get("instance_count") or 1)
        return partitioned_lag(binder, launch["input"], group, count)
    return binder.lag(launch["input"], group)
