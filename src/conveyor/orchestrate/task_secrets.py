"""The password of a URL in a task (a ``sql`` step's ``--url``), sealed at rest.

A step needs it in clear when it starts; nobody needs to read it back. The
registry keeps task definitions, executions (their definition, properties and
steps' parameters) and schedules' parameters with the password sealed
(:func:`conveyor.store.sealing.seal_url`, the key that seals bound services'
credentials); the launcher unseals it into
the step's ``CONVEYOR_PARAMS`` only, and the run's recorded parameters, like
everything shown, have it masked. Rows from before are sealed at start-up
(:func:`seal_stored_tasks`), with no schema change.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from conveyor.store.sealing import seal_url, url_password
from conveyor.store.secrets import SecretBox
from conveyor.store.tasks import TaskRepository
from conveyor.tasks.dsl import parse_definition

__all__ = ["seal_definition", "seal_properties", "seal_stored_tasks"]

log = logging.getLogger("conveyor.orchestrate.tasks")


def _is_url_option(name: str) -> bool:
    """Whether a step's option holds a URL that may carry a password (``url``, ``db-url``)."""
    return name.lower().replace("_", "-").split("-")[-1] == "url"


def seal_definition(box: SecretBox, text: str) -> str:
    """``text`` with the password of every URL option's value sealed (the user's spelling
    kept otherwise; values sealed already are kept, so this can be applied again)."""
    for app in parse_definition(text).apps():
        for argument in app.arguments:
            value = argument.value
            if _is_url_option(argument.name) and url_password(value):
                text = text.replace(value, seal_url(box, value))
    return text


def seal_properties(box: SecretBox, properties: Mapping[str, str]) -> dict[str, str]:
    """Launch properties (``app.<step>.<option>``) with URL options' passwords sealed."""
    return {
        key: seal_url(box, value) if _is_url_option(key.rpartition(".")[2]) else value
        for key, value in properties.items()
    }


def _sealed_execution(box: SecretBox, doc: Mapping[str, Any]) -> dict[str, Any]:
    steps = [
        {**step, "params": seal_properties(box, step.get("params") or {})}
        for step in doc.get("steps") or ()
    ]
    return {
        **doc,
        "definition": seal_definition(box, str(doc.get("definition") or "")),
        "properties": seal_properties(box, doc.get("properties") or {}),
        "params": seal_properties(box, doc.get("params") or {}),
        "steps": steps,
    }


def seal_stored_tasks(box: SecretBox, records: TaskRepository) -> int:
    """Seal the URL passwords task rows kept in clear before; how many rows changed."""
    changed = 0
    for name, text in records.tasks():
        sealed = seal_definition(box, text)
        if sealed != text:
            records.replace_definition(name, sealed)
            changed += 1
    for doc in records.executions():
        sealed_doc = _sealed_execution(box, doc)
        if sealed_doc != doc:
            records.save_execution(sealed_doc)
            changed += 1
    for doc in records.schedules():
        sealed_schedule = {
            **doc,
            "params": seal_properties(box, doc.get("params") or {}),
            "properties": seal_properties(box, doc.get("properties") or {}),
        }
        if sealed_schedule != doc:
            records.save_schedule(sealed_schedule)
            changed += 1
    if changed:
        log.info("URL passwords kept in clear in %d task row(s) are now sealed", changed)
    return changed
