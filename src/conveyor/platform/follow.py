"""Model apps that follow an alias: when ``models:/name@alias`` moves, the app rolls onto it.

A manifest asks for it::

    applications:
      - name: diagnosis
        model: models:/diagnosis@champion
        follow-alias: true

The alias may move from anywhere (``conveyor models alias``, the API, another
machine sharing the registry database), so the platform looks every few
seconds: for each started app whose running revision follows an alias, the
version the alias names now against the one its droplet holds. When they
differ the app is restaged — a new revision with the new version's file,
deployed rolling like any push — and an ``alias-moved`` event records from
which version to which. A version that failed to deploy is not tried again
until the alias moves once more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from conveyor.platform.controller import Controller

__all__ = ["AliasFollower", "look_every"]

log = logging.getLogger("conveyor.platform.follow")

#: Seconds between two looks at the aliases apps follow.
INTERVAL = 2.0


class AliasFollower:
    """Rolls apps that follow a model alias onto the version it points at now."""

    def __init__(
        self,
        controller: Controller,
        *,
        interval: float = INTERVAL,
        lookup: Callable[[str], int] | None = None,
    ) -> None:
        self.controller = controller
        self.interval = interval
        self._lookup = lookup or self._version_now
        #: app -> the version whose deploy failed (not retried until the alias moves again).
        self._failed: dict[str, int] = {}
        #: app -> the last lookup error reported (each said once, not every interval).
        self._reported: dict[str, str] = {}

    def _version_now(self, uri: str) -> int:
        from conveyor.repro.registered import resolve_version

        return resolve_version(uri, self.controller.state.registry).version

    async def check(self) -> list[str]:
        """Look once; returns the apps rolled onto a new version."""
        rolled: list[str] = []
        state = self.controller.state
        for app in await asyncio.to_thread(state.apps):
            if app.state != "started" or not app.revision:
                continue
            revision = await asyncio.to_thread(state.revision, app.name, app.revision)
            spec = self.controller.spec(revision)
            if not spec.options.get("follow_alias") or not spec.model:
                continue
            served = (revision.droplet or {}).get("version")
            try:
                now = await asyncio.to_thread(self._lookup, spec.model)
            except ConveyorError as exc:
                # The alias or model is gone: the app keeps serving what it has.
                if self._reported.get(app.name) != exc.message:
                    self._reported[app.name] = exc.message
                    log.warning("app %s follows %s: %s", app.name, spec.model, exc.message)
                continue
            self._reported.pop(app.name, None)
            if now == served or self._failed.get(app.name) == now:
                continue
            try:
                await self.controller.restage(
                    app.name,
                    _progress(app.name),
                    description=f"{spec.model} moved: version {served} -> {now}",
                    refresh=False,
                    event={"kind": "alias-moved", "model": spec.model, "from": served, "to": now},
                )
            except ConveyorError as exc:
                self._failed[app.name] = now
                log.warning("app %s could not roll onto version %s: %s", app.name, now, exc)
                continue
            self._failed.pop(app.name, None)
            rolled.append(app.name)
        return rolled

    async def run(self) -> None:
        """Look every ``interval`` seconds until cancelled."""
        await look_every(self.interval, self.check, "following model aliases")


async def look_every(interval: float, check: Callable[[], Awaitable[object]], what: str) -> None:
    """``check()`` every ``interval`` seconds until cancelled; a failure is logged, not raised."""
    while True:
        try:
            await check()
        except Exception:  # a bug here must not stop the platform; the log has it
            log.exception("%s failed", what)
        await asyncio.sleep(interval)


def _progress(app: str) -> Callable[[str], None]:
    def say(line: str) -> None:
        log.info("%s: %s", app, line)

    return say
