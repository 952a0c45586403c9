"""Secret option values (``OptionSpec.secret``): masked wherever a stream is shown, hashed
where the app only checks them (``OptionSpec.hashed``) before they are stored.

What is shown (``stream list``, ``info``, ``history``, the API's answers) has
each secret value replaced by :data:`MASK`, and so has the password of a URL
option (the ``sql`` sink's ``--url=postgresql://user:pw@host/db``).

Before a definition or properties are kept (registry rows, the platform's app
specs), the values of hashed options become salted hashes
(:func:`conveyor.streams.token_hash.hash_token`): the http source's
``--auth-token`` is checked against its hash, so the registry never holds the
token. What an app sends elsewhere (a URL's password) it needs as it was
given: the caller passes ``seal`` (the platform seals the password with the
services' key, :func:`conveyor.store.sealing.seal_url`), and the platform
unseals it into the app's environment when an instance starts.

>>> mask_definition("http --path=/tx --auth-token=s3cret | log")
'http --path=/tx --auth-token=*** | log'
>>> mask_properties("http --auth-token=a | log", {"app.http.auth-token": "b"})
{'app.http.auth-token': '***'}
>>> "s3cret" in hash_definition("http --auth-token=s3cret | log")
False
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from conveyor.streams.catalogue import CATALOGUE
from conveyor.streams.dsl import parse_stream, to_text
from conveyor.streams.errors import StreamError
from conveyor.streams.token_hash import hash_token

__all__ = [
    "MASK",
    "hash_definition",
    "hash_options",
    "hash_properties",
    "mask_definition",
    "mask_options",
    "mask_properties",
    "secret_options",
]

#: What a secret value is shown as.
MASK = "***"


def secret_options(app: str, *, hashed: bool = False) -> frozenset[str]:
    """The options of catalogue app ``app`` (in any role) whose values are credentials
    (with ``hashed``: only those kept as hashes)."""
    return frozenset(
        option.name
        for spec in CATALOGUE.values()
        if spec.name == app
        for option in spec.options
        if option.secret and (option.hashed or not hashed)
    )


def _url_options(app: str) -> frozenset[str]:
    """The options of ``app`` that hold a URL, which may carry a password (``user:pw@``)."""
    return frozenset(
        option.name
        for spec in CATALOGUE.values()
        if spec.name == app
        for option in spec.options
        if option.type == "database" or option.name == "url"
    )


def _without_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part masked."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    credentials, at, host = netloc.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:{MASK}@{host}{slash}{path}"


def _masked(app: str, key: str, value: str) -> str:
    if key in secret_options(app):
        return MASK
    return _without_password(value) if key in _url_options(app) else value


#: Seals the password of a URL option's value (the platform's key); None: kept as given.
Seal = Callable[[str], str] | None


def _kept(seal: Seal) -> Callable[[str, str, str], str]:
    """How the registry keeps option ``key`` of ``app``: hashed, its URL's password sealed."""

    def new(app: str, key: str, value: str) -> str:
        if key in secret_options(app, hashed=True):
            return hash_token(value)
        return seal(value) if seal is not None and key in _url_options(app) else value

    return new


def _rewrite_definition(definition: str, new: Callable[[str, str, str], str]) -> str:
    """``definition`` with each non-empty option value ``v`` of app ``a`` under key ``k``
    replaced by ``new(a, k, v)``; unchanged if nothing changes."""
    try:
        tree = parse_stream(definition)
    except StreamError:
        return definition  # not a definition Conveyor would have stored; nothing to find in it
    changed = False
    apps = []
    for app in tree.apps:
        options = tuple(
            dataclasses.replace(o, value=new(app.name, o.key, o.value)) if o.value else o
            for o in app.options
        )
        changed = changed or options != app.options
        apps.append(dataclasses.replace(app, options=options))
    # Printed again only when something changed: the user's own spelling is kept otherwise.
    return to_text(dataclasses.replace(tree, apps=tuple(apps))) if changed else definition


def _rewrite_properties(
    definition: str, properties: Mapping[str, str], new: Callable[[str, str, str], str]
) -> dict[str, str]:
    """``app.<label>.<option>`` values ``v`` replaced by ``new(app, option, v)``."""
    try:
        by_label = {app.reference: app.name for app in parse_stream(definition).apps}
    except StreamError:
        by_label = {}
    out = {}
    for key, value in properties.items():
        scope, _, rest = key.partition(".")
        label, _, option = rest.partition(".")
        app = by_label.get(label, label)
        out[key] = new(app, option, value) if scope == "app" and value else value
    return out


def mask_definition(definition: str) -> str:
    """``definition`` with every secret option's value (and the password of a URL) masked
    (unchanged if it has none)."""
    return _rewrite_definition(definition, _masked)


def mask_properties(definition: str, properties: Mapping[str, str]) -> dict[str, str]:
    """Deployment properties with secret values (and URLs' passwords) masked."""
    return _rewrite_properties(definition, properties, _masked)


def mask_options(app: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """One app's options with the secret ones (and URLs' passwords) masked."""
    secret = secret_options(app)
    return {
        k: MASK if k in secret and v else _masked(app, k, v) if isinstance(v, str) and v else v
        for k, v in options.items()
    }


def hash_options(app: str, options: Mapping[str, Any], seal: Seal = None) -> dict[str, Any]:
    """One app's options as the registry keeps them (see :func:`hash_definition`)."""
    new = _kept(seal)
    return {k: new(app, k, v) if isinstance(v, str) and v else v for k, v in options.items()}


def hash_definition(definition: str, seal: Seal = None) -> str:
    """``definition`` as the registry keeps it: hashed options' values as salted hashes,
    with ``seal`` URL options' passwords sealed (values that are hashes or sealed already
    are kept, so this can be applied again)."""
    return _rewrite_definition(definition, _kept(seal))


def hash_properties(
    definition: str, properties: Mapping[str, str], seal: Seal = None
) -> dict[str, str]:
    """Deployment properties as the registry keeps them (see :func:`hash_definition`)."""
    return _rewrite_properties(definition, properties, _kept(seal))
