"""A data fix at start-up: stream credentials kept in clear become the hashes and sealed
passwords kept now.

Before the registry kept the http source's ``--auth-token`` as a salted hash
(:mod:`conveyor.streams.token_hash`), a stream's definition, its versions'
definitions and properties, and its platform apps' specs held the token as
given. The platform rewrites those rows when it starts, so the token is no
longer in the database; the apps check a request's token against the hash, and
an instance that still runs with the clear token (started before) keeps working
until it restarts. A URL option's password (the ``sql`` sink's ``--url``,
``http-request``'s) is sealed the same way, with the key that seals bound
services' credentials (:func:`url_sealer`). No schema change: the same columns
hold the hash and the sealed text.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from conveyor.orchestrate.stream_kind import StreamKind
from conveyor.store.apps import AppRepository
from conveyor.store.sealing import seal_url
from conveyor.store.streams import StreamRepository
from conveyor.streams.masking import Seal, hash_definition, hash_options, hash_properties

__all__ = ["hash_stored_tokens", "url_sealer"]

log = logging.getLogger("conveyor.orchestrate.streams")


def hash_stored_tokens(apps: AppRepository, records: StreamRepository) -> int:
    """Rewrite every stored clear token as its hash, every URL's password sealed; how many
    rows changed."""
    seal = url_sealer(apps)
    changed = 0
    for row in records.streams():
        definition = hash_definition(row.definition, seal)
        if definition != row.definition:
            records.set_status(row.name, row.status, definition=definition)
            changed += 1
        for v in records.versions(row.name):
            definition = hash_definition(v.definition, seal)
            properties = hash_properties(v.definition, v.properties, seal)
            if definition != v.definition or properties != dict(v.properties):
                records.replace_version(
                    row.name, v.version, definition=definition, properties=properties
                )
                changed += 1
    for app in apps.apps():
        for revision in apps.revisions(app.name):
            spec = _hashed_spec(revision.spec, seal)
            if spec is not None:
                apps.replace_spec(app.name, revision.number, spec)
                changed += 1
    if changed:
        log.info(
            "stream credentials kept in clear in %d registry row(s) are now hashed or sealed",
            changed,
        )
    return changed


def url_sealer(apps: AppRepository) -> Seal:
    """What seals a URL option's password with the platform's key (None: no key, kept)."""
    return None if apps.secrets is None else functools.partial(seal_url, apps.secrets)


def _hashed_spec(spec: Mapping[str, Any], seal: Seal) -> dict[str, Any] | None:
    """A stream app's revision spec with its launch options hashed; None if nothing changes."""
    options = spec.get("options") or {}
    launch = options.get("stream_app")
    if spec.get("kind") != StreamKind.name or not isinstance(launch, dict):
        return None
    launched = launch.get("options") or {}
    hashed = hash_options(str(launch.get("app")), launched, seal)
    if hashed == launched:
        return None
    return {**spec, "options": {**options, "stream_app": {**launch, "options": hashed}}}
