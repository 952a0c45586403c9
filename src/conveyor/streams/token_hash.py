"""Tokens kept as salted scrypt hashes: the registry holds what checking a token needs, not it.

A stream's ``--auth-token`` is only ever compared with what a client sends, so
the registry (stream definitions, versions, the platform's app specs) keeps
``scrypt$<log2 n>$<r>$<p>$<salt>$<hash>`` in its place, and the http source
checks a request's bearer token against it (:class:`TokenCheck`).

Why scrypt, not a fast salted SHA-256: a token is whatever the user typed
(``s3cret`` passes), so whoever reads a copy of the registry could try a
dictionary against a fast hash at billions a second; scrypt (2^14, 8, 1: 16 MiB
and some tens of milliseconds a try) makes that costly. The source pays it
once per distinct token it accepts (:class:`TokenCheck` remembers the last one
that matched, as a SHA-256 in memory) and verifies one wrong token at a time,
so a flood of wrong ones costs one core, not memory per request.

>>> stored = hash_token("s3cret")
>>> stored.startswith("scrypt$14$8$1$"), is_token_hash(stored), hash_token(stored) == stored
(True, True, True)
>>> TokenCheck(stored).matches("s3cret"), TokenCheck(stored).matches("S3cret")
(True, False)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import threading

__all__ = ["TokenCheck", "hash_token", "is_token_hash"]

_PREFIX = "scrypt"
#: log2 of scrypt's cost n, block size r and parallelism p: 16 MiB a hash.
_LOG_N, _R, _P = 14, 8, 1
_SALT_BYTES, _HASH_BYTES = 16, 32
_SHAPE = re.compile(r"scrypt\$(\d{1,2})\$(\d{1,2})\$(\d)\$([\w-]{16,64})\$([\w-]{43})", re.ASCII)
#: Most memory one check may take (scrypt needs 128 * r * 2^log_n bytes).
_MAX_MEMORY = 64 << 20


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(token: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        token.encode(), salt=salt, n=1 << log_n, r=r, p=p, maxmem=_MAX_MEMORY, dklen=_HASH_BYTES
    )


def _parse(value: str) -> tuple[int, int, int, bytes, bytes] | None:
    """(log2 n, r, p, salt, hash) of a hash of ours, or None (a token in clear, say)."""
    match = _SHAPE.fullmatch(value)
    if match is None:
        return None
    log_n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    if not (1 <= log_n <= 20 and r >= 1 and p >= 1 and 129 * r * (1 << log_n) < _MAX_MEMORY):
        return None  # costs no check of ours would pay: not one of our hashes
    return log_n, r, p, _unb64(match.group(4)), _unb64(match.group(5))


def is_token_hash(value: str) -> bool:
    """Whether ``value`` is a hash :func:`hash_token` made (not a token in clear).

    A user may give one as the token itself (made by ``hash_token`` elsewhere):
    it is kept as it is, and the clear token it stands for is what clients send.
    """
    return _parse(value) is not None


def hash_token(token: str) -> str:
    """``token`` as a salted scrypt hash; a hash already, or empty (no token), is kept."""
    if not token or is_token_hash(token):
        return token
    salt = os.urandom(_SALT_BYTES)
    digest = _scrypt(token, salt, _LOG_N, _R, _P)
    return f"{_PREFIX}${_LOG_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


class TokenCheck:
    """Whether a presented token is the one ``expected`` stands for, in constant time.

    ``expected`` is a :func:`hash_token` hash, or (a stream deployed before tokens
    were hashed) the token in clear.
    """

    def __init__(self, expected: str) -> None:
        self._hashed = _parse(expected)
        self._clear = expected.encode() if self._hashed is None else None
        #: SHA-256 of the last token that matched: a repeat is checked without scrypt.
        self._accepted: bytes | None = None
        self._slow = threading.Lock()

    def matches(self, given: str) -> bool:
        if self._clear is not None:
            return hmac.compare_digest(given.encode(), self._clear)
        assert self._hashed is not None
        quick = hashlib.sha256(given.encode()).digest()
        accepted = self._accepted
        if accepted is not None and hmac.compare_digest(quick, accepted):
            return True
        log_n, r, p, salt, digest = self._hashed
        with self._slow:  # one scrypt at a time: 16 MiB, whatever the number of requests
            ok = hmac.compare_digest(_scrypt(given, salt, log_n, r, p), digest)
        if ok:
            self._accepted = quick
        return ok
