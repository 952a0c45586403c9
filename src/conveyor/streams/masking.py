"""Masking secret option values (``OptionSpec.secret``) wherever a stream is shown.

The definition, properties and options a stream was deployed with stay as
they are in the registry and reach the apps unchanged; only what is shown
(``stream list``, ``info``, ``history``, the API's answers) has each secret
value replaced by :data:`MASK`.

>>> mask_definition("http --path=/tx --auth-token=s3cret | log")
'http --path=/tx --auth-token=*** | log'
>>> mask_properties("http --auth-token=a | log", {"app.http.auth-token": "b"})
{'app.http.auth-token': '***'}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from conveyor.streams.catalogue import CATALOGUE
from conveyor.streams.dsl import parse_stream, to_text
from conveyor.streams.errors import StreamError

__all__ = ["MASK", "mask_definition", "mask_options", "mask_properties", "secret_options"]

#: What a secret value is shown as.
MASK = "***"


def secret_options(app: str) -> frozenset[str]:
    """The options of catalogue app ``app`` (in any role) whose values are credentials."""
    return frozenset(
        option.name
        for spec in CATALOGUE.values()
        if spec.name == app
        for option in spec.options
        if option.secret
    )


def mask_definition(definition: str) -> str:
    """``definition`` with every secret option's value masked (unchanged if it has none)."""
    try:
        tree = parse_stream(definition)
    except StreamError:
        return definition  # not a definition Conveyor would have stored; nothing to find in it
    changed = False
    apps = []
    for app in tree.apps:
        secret = secret_options(app.name)
        options = tuple(
            dataclasses.replace(o, value=MASK) if o.key in secret and o.value else o
            for o in app.options
        )
        changed = changed or options != app.options
        apps.append(dataclasses.replace(app, options=options))
    # Printed again only when something was masked: the user's own spelling is kept otherwise.
    return to_text(dataclasses.replace(tree, apps=tuple(apps))) if changed else definition


def mask_properties(definition: str, properties: Mapping[str, str]) -> dict[str, str]:
    """Deployment properties with ``app.<label>.<secret option>`` values masked."""
    try:
        by_label = {app.reference: app.name for app in parse_stream(definition).apps}
    except StreamError:
        by_label = {}
    shown = {}
    for key, value in properties.items():
        scope, _, rest = key.partition(".")
        label, _, option = rest.partition(".")
        secret = scope == "app" and option in secret_options(by_label.get(label, label))
        shown[key] = MASK if secret and value else value
    return shown


def mask_options(app: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """One app's options with the secret ones masked."""
    secret = secret_options(app)
    return {k: MASK if k in secret and v else v for k, v in options.items()}
