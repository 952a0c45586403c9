"""Conveyor's settings: one typed object, read once from the environment at start-up.

Nothing else in the package reads ``os.environ`` for configuration; code that
needs a setting receives a :class:`Settings` (or calls :func:`get_settings`,
which reads the environment the first time and caches the result).

>>> s = Settings.from_env({"CONVEYOR_HOME": "/tmp/cv"})
>>> s.database_url
'sqlite:////tmp/cv/registry.db'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

__all__ = [
    "SERVE_PORT",
    "Settings",
    "database_url",
    "get_settings",
    "parse_duration",
    "parse_share",
    "parse_size",
]

_MIB = 1024 * 1024

#: ``conveyor serve``'s default port: clear of the platform's defaults (control API 7070,
#: router 8080), so a model served on a laptop does not fight ``conveyor up`` for its port.
SERVE_PORT = 8081


def parse_size(text: str, name: str) -> int:
    """Parse ``"200M"``, ``"1G"``, ``"512K"`` or a plain byte count."""
    units = {"K": 1024, "M": _MIB, "G": 1024 * _MIB}
    raw = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        if raw and raw[-1] in units:
            return int(float(raw[:-1]) * units[raw[-1]])
        return int(raw)
    except ValueError:
        from conveyor.errors import ConfigError

        raise ConfigError(
            f"{name}={text!r} is not a size; use a byte count or a number with K, M or G "
            "(for example 200M)"
        ) from None


def parse_share(text: str, name: str) -> float:
    """A share of requests from ``off``/``on``, ``0.25`` or ``25%`` (setting ``name``).

    >>> parse_share("10%", "X"), parse_share("on", "X"), parse_share("off", "X")
    (0.1, 1.0, 0.0)
    """
    raw = text.strip().lower()
    words = {"": 0.0, "off": 0.0, "no": 0.0, "false": 0.0, "on": 1.0, "yes": 1.0, "true": 1.0}
    if raw in words:
        return words[raw]
    try:
        share = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        from conveyor.errors import ConfigError

        raise ConfigError(
            f"{name}={text!r} is not a share of requests; use off, on, a fraction from 0 to 1 "
            "or a percentage (for example 10%)"
        )
    return share


def parse_duration(text: str, name: str) -> float:
    """Seconds from ``3600``, ``90s``, ``30m``, ``12h`` or ``7d`` (setting ``name``)."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    raw = text.strip().lower()
    try:
        seconds = float(raw[:-1]) * units[raw[-1]] if raw and raw[-1] in units else float(raw)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        from conveyor.errors import ConfigError

        raise ConfigError(
            f"{name}={text!r} is not a duration; use seconds or a number with s, m, h or d "
            "(for example 7d)"
        )
    return seconds


def parse_openlineage(text: str) -> str | None:
    """Where CONVEYOR_OPENLINEAGE sends events: a file:// or http(s):// URL, or None."""
    raw = text.strip()
    if raw.lower() in ("", "off", "none"):
        return None
    if raw.startswith(("file:///", "http://", "https://")):
        return raw
    from conveyor.errors import ConfigError

    raise ConfigError(
        f"CONVEYOR_OPENLINEAGE={text!r} is not a destination; use file:///path/events.jsonl, "
        "http://host:port (a Marquez-compatible endpoint) or off"
    )


def parse_address(text: str, name: str) -> tuple[str, int]:
    """``host:port`` (port 0: any free port) from setting ``name``."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        from conveyor.errors import ConfigError

        raise ConfigError(f"{name}={text!r} is not an address; use host:port, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


def parse_roots(text: str, name: str) -> tuple[Path, ...]:
    """Absolute folders separated by ``os.pathsep`` from setting ``name``."""
    roots = tuple(Path(part).expanduser() for part in text.split(os.pathsep) if part.strip())
    relative = [str(r) for r in roots if not r.is_absolute()]
    if relative:
        from conveyor.errors import ConfigError

        raise ConfigError(
            f"{name}: {', '.join(relative)} is not an absolute path; list absolute folders "
            f"separated by {os.pathsep!r}"
        )
    return roots


def database_url(text: str) -> str:
    """A registry URL with the common spellings SQLAlchemy does not take written out in full.

    ``postgres://`` (Heroku's and libpq's spelling) and a bare ``postgresql://``
    (which SQLAlchemy would open with psycopg2, not installed with Conveyor) both
    mean psycopg 3, the driver of the ``postgres`` extra:

    >>> database_url("postgres://me@db/conveyor")
    'postgresql+psycopg://me@db/conveyor'
    >>> database_url("postgresql+psycopg2://me@db/conveyor")
    'postgresql+psycopg2://me@db/conveyor'
    """
    scheme, sep, rest = text.strip().partition("://")
    backend, _, driver = scheme.partition("+")
    if sep and backend.lower() in ("postgres", "postgresql"):
        return f"postgresql+{driver or 'psycopg'}://{rest}"
    return text


@dataclass(frozen=True)
class Settings:
    """Where Conveyor keeps its state and how it behaves; immutable once built."""

    home: Path
    database_url: str
    artifact_root: Path
    #: Largest total size of a working-tree snapshot (tracked + untracked files).
    snapshot_limit: int = 200 * _MIB
    #: Where reproduction environments are cached.
    env_cache: Path = field(default=Path())
    #: Extra type names the operator trusts when loading skops files
    #: (CONVEYOR_TRUSTED_TYPES, comma-separated). Never read from a model file.
    trusted_types: tuple[str, ...] = ()
    #: Where the platform's control API listens (CONVEYOR_API, host:port; loopback).
    api_address: tuple[str, int] = ("127.0.0.1", 7070)
    #: Where the platform's router listens (CONVEYOR_ROUTER, host:port).
    router_address: tuple[str, int] = ("127.0.0.1", 8080)
    #: Where stream apps' relative file and database paths resolve (CONVEYOR_STREAM_DATA);
    #: never inside ``home``, which holds the platform's token and registry.
    stream_data: Path = field(default_factory=lambda: Path.home() / "conveyor-data")
    #: Further folders stream apps may read and write (CONVEYOR_STREAM_ROOTS, os.pathsep list).
    stream_roots: tuple[Path, ...] = ()
    #: How app instances are isolated (CONVEYOR_ISOLATION): "auto" (namespaces, and
    #: a uid per app when run as root; refuse to start where none works) or "none".
    isolation: str = "auto"
    #: ``s3://bucket/prefix`` when CONVEYOR_ARTIFACT_ROOT names a bucket (then it, not
    #: artifact_root, holds the artifacts).
    artifact_url: str | None = None
    #: The S3 endpoint, for S3-compatible stores (CONVEYOR_S3_ENDPOINT_URL, AWS_ENDPOINT_URL_S3
    #: or AWS_ENDPOINT_URL); None: AWS itself. Credentials come from the usual AWS_* variables.
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    #: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; None: boto3 looks further
    #: (AWS_PROFILE, ~/.aws, an instance role). Kept out of repr.
    s3_credentials: tuple[str | None, str | None, str | None] = field(
        default=(None, None, None), repr=False
    )
    #: Largest size of the local read cache of a bucket store (CONVEYOR_ARTIFACT_CACHE_SIZE).
    artifact_cache_size: int = 2048 * _MIB
    #: Share of scored requests a serving process records in its request log for
    #: ``conveyor lineage`` (CONVEYOR_REQUEST_LOG: off, on, 0.1, 10%); 0: off, the default.
    request_log: float = 0.0
    #: The folder this process writes its request log into (CONVEYOR_REQUEST_LOG_DIR; the
    #: platform sets it for each model app); None: ``request_log_root / <model name>``.
    request_log_dir: Path | None = None
    #: Seconds a request log file is kept (CONVEYOR_REQUEST_LOG_RETENTION: 7d, 12h, 3600).
    request_log_retention: float = 7 * 86400.0
    #: Where OpenLineage events go (CONVEYOR_OPENLINEAGE): ``file:///path.jsonl``,
    #: ``http://host:port`` (Marquez's POST /api/v1/lineage) or None, nowhere (the default).
    openlineage: str | None = None
    #: The app and revision this process serves, when the platform started it
    #: (CONVEYOR_APP, CONVEYOR_APP_REVISION).
    app: str | None = None
    app_revision: int | None = None

    @property
    def artifact_location(self) -> str:
        """Where the artifacts are, as CONVEYOR_ARTIFACT_ROOT would say it."""
        return self.artifact_url or str(self.artifact_root)

    @property
    def cache_dir(self) -> Path:
        """Local copies that may be thrown away at any time (a bucket store's read cache)."""
        return self.home / "cache"

    @property
    def request_log_root(self) -> Path:
        """Every serving process's request log, one folder per app (or served model)."""
        return self.platform_dir / "requests"

    @property
    def platform_dir(self) -> Path:
        """The platform's own files: token, address file, droplets, logs."""
        return self.home / "platform"

    @property
    def secrets_key_file(self) -> Path:
        """The key that seals service credentials in the registry (0600, made on first use)."""
        return self.platform_dir / "secrets.key"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("CONVEYOR_HOME") or Path.home() / ".conveyor").expanduser()
        db = database_url(env.get("CONVEYOR_DATABASE_URL") or f"sqlite:///{home / 'registry.db'}")
        root = env.get("CONVEYOR_ARTIFACT_ROOT") or str(home / "artifacts")
        url = _bucket_url(root)
        artifacts = home / "artifacts" if url else Path(root).expanduser()
        endpoint = (
            env.get("CONVEYOR_S3_ENDPOINT_URL")
            or env.get("AWS_ENDPOINT_URL_S3")
            or env.get("AWS_ENDPOINT_URL")
            or None
        )
        cache = env.get("CONVEYOR_ARTIFACT_CACHE_SIZE", "2G")
        limit = parse_size(env.get("CONVEYOR_SNAPSHOT_LIMIT", "200M"), "CONVEYOR_SNAPSHOT_LIMIT")
        envs = Path(env.get("CONVEYOR_ENV_CACHE") or home / "envs").expanduser()
        trusted = tuple(
            t.strip() for t in env.get("CONVEYOR_TRUSTED_TYPES", "").split(",") if t.strip()
        )
        data = Path(env.get("CONVEYOR_STREAM_DATA") or Path.home() / "conveyor-data")
        isolation = env.get("CONVEYOR_ISOLATION", "auto").strip().lower() or "auto"
        if isolation not in ("auto", "none"):
            from conveyor.errors import ConfigError

            raise ConfigError(
                f"CONVEYOR_ISOLATION={env['CONVEYOR_ISOLATION']!r} is not a setting; use auto "
                "(isolate app instances, the default) or none (run them unisolated)"
            )
        return cls(
            stream_data=data.expanduser(),
            stream_roots=parse_roots(env.get("CONVEYOR_STREAM_ROOTS", ""), "CONVEYOR_STREAM_ROOTS"),
            isolation=isolation,
            api_address=parse_address(env.get("CONVEYOR_API", "127.0.0.1:7070"), "CONVEYOR_API"),
            router_address=parse_address(
                env.get("CONVEYOR_ROUTER", "127.0.0.1:8080"), "CONVEYOR_ROUTER"
            ),
            trusted_types=trusted,
            home=home,
            database_url=db,
            artifact_root=artifacts,
            snapshot_limit=limit,
            env_cache=envs,
            artifact_url=url,
            s3_endpoint_url=endpoint,
            s3_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            s3_credentials=(
                env.get("AWS_ACCESS_KEY_ID") or None,
                env.get("AWS_SECRET_ACCESS_KEY") or None,
                env.get("AWS_SESSION_TOKEN") or None,
            ),
            artifact_cache_size=parse_size(cache, "CONVEYOR_ARTIFACT_CACHE_SIZE"),
            request_log=parse_share(env.get("CONVEYOR_REQUEST_LOG", "off"), "CONVEYOR_REQUEST_LOG"),
            request_log_dir=Path(env["CONVEYOR_REQUEST_LOG_DIR"]).expanduser()
            if env.get("CONVEYOR_REQUEST_LOG_DIR")
            else None,
            request_log_retention=parse_duration(
                env.get("CONVEYOR_REQUEST_LOG_RETENTION", "7d"), "CONVEYOR_REQUEST_LOG_RETENTION"
            ),
            openlineage=parse_openlineage(env.get("CONVEYOR_OPENLINEAGE", "")),
            app=env.get("CONVEYOR_APP") or None,
            app_revision=int(env["CONVEYOR_APP_REVISION"])
            if env.get("CONVEYOR_APP_REVISION", "").isdigit()
            else None,
        )

    def with_home(self, home: Path) -> Settings:
        """A copy rooted somewhere else (used by tests and by reproduce sandboxes)."""
        return replace(
            self,
            home=home,
            database_url=f"sqlite:///{home / 'registry.db'}",
            artifact_root=home / "artifacts",
            artifact_url=None,
            env_cache=home / "envs",
        )


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _bucket_url(root: str) -> str | None:
    """``s3://bucket/prefix`` (normalised) if CONVEYOR_ARTIFACT_ROOT names a bucket, else None.

    A folder never contains ``://``; any other scheme is refused rather than
    taken for a relative folder named ``gs:``.
    """
    scheme, sep, rest = root.partition("://")
    if not sep:
        return None
    from conveyor.errors import ConfigError

    if scheme != "s3":
        raise ConfigError(
            f"CONVEYOR_ARTIFACT_ROOT={root!r} is neither a folder nor an s3:// URL",
            hint="Use a folder, or s3://bucket/prefix for an S3-compatible store.",
        )
    bucket, _, prefix = rest.partition("/")
    parts = [p for p in prefix.split("/") if p]
    if not _BUCKET.fullmatch(bucket) or any(p in {".", ".."} for p in parts):
        raise ConfigError(
            f"CONVEYOR_ARTIFACT_ROOT={root!r} is not a bucket URL",
            hint="The form is s3://bucket/prefix: a bucket name of 3-63 lowercase letters, "
            "digits, dots and hyphens, then an optional prefix.",
        )
    return "/".join([f"s3://{bucket}", *parts])


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings.from_env()
