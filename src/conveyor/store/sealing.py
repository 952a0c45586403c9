"""Secrets inside the values the registry keeps, sealed with the services' key.

What an app or a step needs in clear when it starts, but nobody needs to read
back: the password of a URL (``postgresql://user:pw@host/db``, the ``sql``
sink's ``--url``, a task's ``sql`` step, ``DATABASE_URL``) and the value of an
environment variable whose name says it is a secret. The registry keeps these
sealed (:class:`~conveyor.store.secrets.SecretBox`, the key that seals bound
services' credentials); the platform unseals them into an instance's or a
step's environment when it starts one, and shows only the variables' names and
URLs with the password masked.

Which variables are secrets (the rule users of Kubernetes Secrets and Cloud
Foundry's CredHub expect to be hidden): a name holding ``PASSWORD``,
``PASSWD``, ``SECRET``, ``TOKEN``, ``KEY``, ``CREDENTIAL`` or ``PRIVATE``
(any case: ``DB_PASSWORD``, ``AWS_SECRET_ACCESS_KEY``, ``api_token``). Any
other variable is kept as given, but for the password of a URL in its value.
Sealing more than needed costs nothing: the app sees the same value.

>>> secret_name("AWS_SECRET_ACCESS_KEY"), secret_name("db_password"), secret_name("PORT")
(True, True, False)
>>> url_password("postgresql://u:pw@127.0.0.1/test"), url_password("sqlite:///x.db")
('pw', '')
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from conveyor.store.secrets import PREFIX, SEALED_IN_TEXT, SecretBox

__all__ = [
    "MASK",
    "mask_sealed",
    "seal_env",
    "seal_url",
    "secret_name",
    "unseal_values",
    "url_password",
]

#: What a sealed secret is shown as.
MASK = "***"

_SECRET_WORDS = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)


def secret_name(name: str) -> bool:
    """Whether a variable named ``name`` holds a secret (see the module's docstring)."""
    return _SECRET_WORDS.search(name) is not None


def _split_url(url: str) -> tuple[str, str, str] | None:
    """``(before, password, after)`` of a ``scheme://user:password@host...`` URL, or None."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    credentials, at, host = netloc.rpartition("@")
    user, colon, password = credentials.partition(":")
    if not sep or not at or not colon or not password:
        return None
    return f"{scheme}://{user}:", password, f"@{host}{slash}{path}"


def url_password(url: str) -> str:
    """The password of a URL's ``user:password@`` part; empty if it has none."""
    parts = _split_url(url)
    return "" if parts is None else parts[1]


def seal_url(box: SecretBox, url: str) -> str:
    """``url`` with the password of its ``user:password@`` part sealed (else as it is)."""
    parts = _split_url(url)
    if parts is None or SecretBox.is_sealed(parts[1]):
        return url
    before, password, after = parts
    return before + box.seal_text(password) + after


def seal_env(box: SecretBox, env: Mapping[str, str]) -> dict[str, str]:
    """An app's variables as the registry keeps them: secret ones sealed whole, URLs'
    passwords sealed in the others (values sealed already are kept)."""
    return {
        key: box.seal_text(value) if secret_name(key) else seal_url(box, value)
        for key, value in env.items()
    }


def _each_text(value: Any, change: Callable[[str], str]) -> Any:
    """``value`` (text, or mappings and lists of them) with ``change`` applied to each text."""
    if isinstance(value, str):
        return change(value) if PREFIX in value else value
    if isinstance(value, Mapping):
        return {k: _each_text(v, change) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_each_text(v, change) for v in value]
    return value


def unseal_values(box: SecretBox | None, value: Any) -> Any:
    """``value`` (text, or mappings and lists of them) with every sealed secret in it in
    clear: what an instance or a step is given when it starts."""
    return value if box is None else _each_text(value, box.unseal_text)


def mask_sealed(value: Any) -> Any:
    """``value`` (text, or mappings and lists of them) as shown: sealed secrets as ``***``."""
    return _each_text(value, lambda text: SEALED_IN_TEXT.sub(MASK, text))
