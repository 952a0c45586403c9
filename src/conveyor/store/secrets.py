"""Sealed secrets: credentials kept in the registry that the database alone does not reveal.

A service's credentials are sealed (Fernet: AES-128-CBC with an HMAC-SHA256
tag, from the ``cryptography`` package) with a key kept in a 0600 file under
the platform's folder. Whoever can read the database (a backup, a shared
PostgreSQL server, another local user reading a world-readable registry.db)
sees only the token; unsealing needs the key file too, which only the
platform's user can read. The key is made on first use.

>>> box = SecretBox.from_settings(settings)                  # doctest: +SKIP
>>> token = box.seal({"password": "s3cret"})                 # doctest: +SKIP
>>> box.unseal(token)                                        # doctest: +SKIP
{'password': 's3cret'}

The same key seals single texts (:meth:`SecretBox.seal_text`): a URL's password
or a secret variable of an app (:mod:`conveyor.store.sealing`).

Losing the key file loses the sealed credentials (create the services again);
back it up with the database if that matters.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import StoreError, UsageError
from conveyor.store.files import PRIVATE_FILE, create_temp, discard, private_dir, write_all

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

    from conveyor.config import Settings

__all__ = ["PREFIX", "SEALED_IN_TEXT", "SecretBox"]

#: Every sealed value starts with this, so a sealed value is told from a plain one.
PREFIX = "sealed:v1:"
#: A sealed value inside a longer text (a URL's password): the prefix, then Fernet's token.
SEALED_IN_TEXT = re.compile(re.escape(PREFIX) + r"[A-Za-z0-9_-]+=*")


class SecretBox:
    """Seals and unseals JSON-able mappings with the key in one private file."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = Path(key_file)
        self._fernet: Fernet | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """The box whose key is ``settings.secrets_key_file`` (in the platform's folder)."""
        return cls(settings.secrets_key_file)

    def __repr__(self) -> str:
        return f"SecretBox({str(self.key_file)!r})"

    @staticmethod
    def is_sealed(value: object) -> bool:
        """Whether ``value`` is a token :meth:`seal` made (not plain, older credentials)."""
        return isinstance(value, str) and value.startswith(PREFIX)

    def seal(self, values: Mapping[str, Any]) -> str:
        """A text token holding ``values`` (JSON), readable only with this box's key."""
        try:
            data = json.dumps(dict(values), sort_keys=True, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise UsageError(f"cannot seal these values: {exc}") from None
        return PREFIX + self._key(create=True).encrypt(data).decode("ascii")

    def unseal(self, token: str) -> dict[str, Any]:
        """The mapping sealed in ``token``; StoreError if this key did not seal it."""
        from cryptography.fernet import InvalidToken

        if not self.is_sealed(token):
            raise StoreError("this value is not sealed credentials")
        try:
            data = self._key(create=False).decrypt(token[len(PREFIX) :].encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise StoreError(
                f"sealed credentials cannot be opened with the key in {self.key_file}",
                hint="They were sealed with another key (the key file was replaced or the "
                "registry comes from another home); create the service again.",
            ) from None
        value: dict[str, Any] = json.loads(data)
        return value

    def seal_text(self, value: str) -> str:
        """``value`` sealed as one token (empty, or sealed already: kept as it is)."""
        if not value or self.is_sealed(value):
            return value
        return self.seal({"text": value})

    def unseal_text(self, text: str) -> str:
        """``text`` with every token :meth:`seal_text` made in it (whole or inside a URL,
        say) replaced by what it seals."""
        if PREFIX not in text:
            return text
        return SEALED_IN_TEXT.sub(lambda found: str(self.unseal(found.group())["text"]), text)

    # -- the key ------------------------------------------------------------

    def _key(self, *, create: bool) -> Fernet:
        if self._fernet is None:
            from cryptography.fernet import Fernet

            self._fernet = Fernet(self._read_key(create))
        return self._fernet

    def _read_key(self, create: bool) -> bytes:
        try:
            fd = os.open(self.key_file, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            if not create:
                raise StoreError(
                    f"the key for sealed credentials, {self.key_file}, is missing",
                    hint="Without it they cannot be read; create the services again.",
                ) from None
            return self._make_key()
        except OSError as exc:
            raise StoreError(f"cannot read {self.key_file}: {exc.strerror or exc}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) & 0o077:
                raise StoreError(
                    f"{self.key_file} can be read by other users; it is not used as a key",
                    hint=f"Run `chmod 600 {self.key_file}` if it is yours.",
                )
            key = os.read(fd, 4096).strip()
        finally:
            os.close(fd)
        return key

    def _make_key(self) -> bytes:
        """Write a new key, 0600, in one step: a concurrent first use keeps the first key made."""
        from cryptography.fernet import Fernet

        key = Fernet.generate_key()
        try:
            folder = private_dir(self.key_file.parent)
            fd, tmp = create_temp(folder, ".key.", PRIVATE_FILE)
            try:
                try:
                    write_all(fd, key)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.link(tmp, self.key_file)  # fails if another process made the key first
            except FileExistsError:
                return self._read_key(create=False)
            finally:
                discard(tmp)
        except OSError as exc:
            raise StoreError(
                f"cannot create the key for sealed credentials, {self.key_file}: "
                f"{exc.strerror or exc}"
            ) from None
        return key
