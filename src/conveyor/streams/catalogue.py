"""The built-in stream apps: their role, their options (type, default, description).

A stream is validated against the catalogue after parsing: every app must
exist in the role its position gives it (source first, sink last, processors
between; a named destination at either end frees that end), and every option
must be declared, well-typed and given when required.

>>> spec = app_spec("filter", Role.PROCESSOR)
>>> spec.resolve({"expression": "amount > 0"})["expression"].source
'amount > 0'
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.config import Settings, get_settings
from conveyor.streams.dsl import AppNode, DslError, StreamNode
from conveyor.streams.errors import ExpressionError, StreamError
from conveyor.streams.expressions import compile_expression
from conveyor.streams.paths import PathNotAllowed, StreamPaths

__all__ = [
    "CATALOGUE",
    "AppSpec",
    "OptionError",
    "OptionSpec",
    "Role",
    "ValidatedApp",
    "app_spec",
    "role_of",
    "validate_stream",
]


class Role(enum.StrEnum):
    SOURCE = "source"  # makes messages; has an output only
    PROCESSOR = "processor"  # input and output
    SINK = "sink"  # consumes messages; has an input only


class OptionError(StreamError):
    """An option is unknown, missing or of the wrong type; ``key`` names it (None: the app)."""

    exit_code = 2

    def __init__(self, code: str, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.key = key


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class OptionSpec:
    """One declared option. ``type``: string, int, float, bool, expression, choice, path
    (a file or folder, confined by :class:`StreamPaths`) or database (a URL; a SQLite file
    in it is confined the same way)."""

    name: str
    type: str
    description: str
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    #: A credential: whoever shows a stream's definition or options should mask its value.
    secret: bool = False
    #: A credential the app only compares with what it is sent: the registry keeps a salted
    #: hash of it in its place (:mod:`conveyor.streams.token_hash`), never the value.
    hashed: bool = False

    def convert(self, raw: str, paths: StreamPaths | None = None) -> Any:
        """The typed value of ``raw``, or an OptionError saying what was expected.

        ``paths`` confines path and database options (default: from the process's settings).
        """
        wrong = f"--{self.name}={raw!r}: expected {self._expected()}"
        value: Any
        if self.type in ("path", "database") and raw:
            paths = paths or StreamPaths.of(get_settings())
            try:
                if self.type == "database":
                    return paths.sqlite_url(raw, self.name)
                return str(paths.confine(raw, self.name))
            except PathNotAllowed as exc:
                raise OptionError("PATH_NOT_ALLOWED", str(exc), self.name) from None
        if self.type == "int":
            try:
                value = int(raw)
            except ValueError:
                raise OptionError("BAD_OPTION_VALUE", wrong, self.name) from None
        elif self.type == "float":
            try:
                value = float(raw)
            except ValueError:
                raise OptionError("BAD_OPTION_VALUE", wrong, self.name) from None
            if not math.isfinite(value):
                raise OptionError("BAD_OPTION_VALUE", wrong, self.name)
        elif self.type == "bool":
            if raw.lower() not in _TRUE | _FALSE:
                raise OptionError("BAD_OPTION_VALUE", wrong, self.name)
            return raw.lower() in _TRUE
        elif self.type == "choice":
            if raw not in self.choices:
                raise OptionError("BAD_OPTION_VALUE", wrong, self.name)
            return raw
        elif self.type == "expression":
            try:
                return compile_expression(raw)
            except ExpressionError as exc:
                raise OptionError("BAD_EXPRESSION", f"--{self.name}: {exc}", self.name) from None
        else:
            return raw
        if self.minimum is not None and value < self.minimum:
            raise OptionError("BAD_OPTION_VALUE", wrong, self.name)
        return value

    def _expected(self) -> str:
        if self.type == "choice":
            return "one of " + ", ".join(self.choices)
        what = {"int": "an integer", "float": "a number", "bool": "true or false"}.get(
            self.type, "text"
        )
        return f"{what} >= {self.minimum:g}" if self.minimum is not None else what


@dataclass(frozen=True)
class AppSpec:
    """A built-in app: name, role, what it does, its options and where it is implemented."""

    name: str
    role: Role
    description: str
    options: tuple[OptionSpec, ...]
    #: "module:attribute" of the class implementing it (imported when the app runs).
    implementation: str

    def option(self, name: str) -> OptionSpec | None:
        return next((o for o in self.options if o.name == name), None)

    def resolve(self, raw: Mapping[str, str], paths: StreamPaths | None = None) -> dict[str, Any]:
        """Typed options with defaults filled in, or the first OptionError."""
        values: dict[str, Any] = {}
        for key, text in raw.items():
            spec = self.option(key)
            if spec is None:
                valid = ", ".join(f"--{o.name}" for o in self.options) or "none"
                raise OptionError(
                    "UNKNOWN_OPTION",
                    f"{self.role} {self.name!r} has no option --{key}; valid options: {valid}",
                    key,
                )
            values[key] = spec.convert(text, paths)
        for spec in self.options:
            if spec.name in values:
                continue
            if spec.required:
                raise OptionError(
                    "MISSING_OPTION",
                    f"{self.role} {self.name!r} needs --{spec.name} ({spec.description})",
                )
            values[spec.name] = (
                spec.convert(spec.default, paths) if isinstance(spec.default, str) else spec.default
            )
        return values


def _o(name: str, type_: str, description: str, default: Any = None, **kw: Any) -> OptionSpec:
    return OptionSpec(name, type_, description, default, **kw)


def _req(name: str, type_: str, description: str, **kw: Any) -> OptionSpec:
    return OptionSpec(name, type_, description, None, required=True, **kw)


_FORMAT = ("jsonl", "csv")
_S, _P, _K = Role.SOURCE, Role.PROCESSOR, Role.SINK
_SRC, _PRC, _SNK = (
    "conveyor.streams.apps.sources",
    "conveyor.streams.apps.processors",
    "conveyor.streams.apps.sinks",
)

_APPS = (
    AppSpec(
        "http",
        _S,
        "Accepts records POSTed to a path: JSON (an object or a list of objects) or CSV.",
        (
            _o("path", "string", "URL path that accepts POST requests", "/"),
            _o("port", "int", "port to listen on; 0 uses $PORT (or any free port)", 0, minimum=0),
            _o(
                "auth-token",
                "string",
                "if set, a POST needs 'Authorization: Bearer <token>' (for routes beyond loopback)",
                "",
                secret=True,
                hashed=True,
            ),
        ),
        "conveyor.streams.apps.httpsource:HttpSource",
    ),
    AppSpec(
        "time",
        _S,
        "Emits {'time': <epoch seconds>} every interval.",
        (
            _o("interval", "float", "seconds between messages", 1.0, minimum=0.001),
            _o("count", "int", "messages to emit, then idle; 0 means no end", 0, minimum=0),
        ),
        f"{_SRC}:TimeSource",
    ),
    AppSpec(
        "file",
        _S,
        "Watches a folder; each new file's rows become messages, then it is renamed *.done.",
        (
            _req("directory", "path", "folder to watch (in the data folder or a stream root)"),
            _o("format", "choice", "file format", "jsonl", choices=_FORMAT),
            _o("pattern", "string", "glob of the files to read", "*"),
            _o("interval", "float", "seconds between scans", 1.0, minimum=0.01),
        ),
        f"{_SRC}:FileSource",
    ),
    AppSpec(
        "load-generator",
        _S,
        "Generates synthetic events: seq, key, amount and feature fields x0..xN.",
        (
            _o("count", "int", "messages to generate, then idle; 0 means no end", 1000, minimum=0),
            _o("rate", "float", "messages per second; 0 means as fast as possible", 0.0, minimum=0),
            _o("fields", "int", "number of float feature fields x0..x(N-1)", 4, minimum=0),
            _o("keys", "int", "distinct values of the 'key' field", 100, minimum=1),
            _o("seed", "int", "random seed (the same seed gives the same events)", 0),
        ),
        f"{_SRC}:LoadGenerator",
    ),
    AppSpec(
        "filter",
        _P,
        "Passes the messages for which the expression is true.",
        (_req("expression", "expression", "condition over the message fields"),),
        f"{_PRC}:Filter",
    ),
    AppSpec(
        "transform",
        _P,
        "Replaces the payload by the expression's value (or merges a dict into it).",
        (
            _req("expression", "expression", "new payload, computed from the message"),
            _o(
                "merge",
                "bool",
                "merge a dict result into the payload instead of replacing it",
                False,
            ),
        ),
        f"{_PRC}:Transform",
    ),
    AppSpec(
        "split",
        _P,
        "Emits one message per element of the list the expression gives.",
        (_o("expression", "expression", "a list computed from the message", "payload"),),
        f"{_PRC}:Split",
    ),
    AppSpec(
        "router",
        _P,
        "Sends each message to the destination the expression names.",
        (
            _req("expression", "expression", "destination name computed from the message"),
            _o(
                "default-destination",
                "string",
                "where messages without a destination go; empty: dropped",
                "",
            ),
        ),
        f"{_PRC}:Router",
    ),
    AppSpec(
        "score",
        _P,
        "Scores micro-batches with a model in one predict call; adds prediction and probabilities.",
        (
            _req(
                "model",
                "string",
                "model file, MLflow model folder, run:<run-id>/<artifact> or "
                "models:/<name>/<version> (or models:/<name>@<alias>)",
            ),
            _o(
                "fields",
                "string",
                "comma-separated payload fields forming a tensor input, in order",
                "",
            ),
            _o("prediction", "string", "payload field that receives the prediction", "prediction"),
            _o(
                "probabilities",
                "string",
                "payload field that receives class probabilities",
                "probabilities",
            ),
            _o("trusted", "bool", "allow pickle/joblib models (they run code when loaded)", False),
            _o(
                "model-run-id",
                "string",
                "the run that trained --model, for lineage (set by the platform for run: models)",
                "",
            ),
            _o(
                "model-digest",
                "string",
                "refuse --model unless it has this digest (set by the platform for run: models)",
                "",
            ),
            _o(
                "model-trusted-types",
                "string",
                "comma-separated types trusted in --model, with --model-digest only (set by "
                "the platform: the types the run recorded when it saved the model)",
                "",
            ),
            _o(
                "strict-inputs",
                "bool",
                "dead-letter messages with fields the model does not take (serve --strict-inputs)",
                False,
            ),
        ),
        "conveyor.streams.apps.score:Score",
    ),
    AppSpec(
        "http-request",
        _P,
        "Calls an HTTP service with each payload; stores the JSON reply in a field.",
        (
            _req("url", "string", "URL to call"),
            _o("method", "choice", "HTTP method", "POST", choices=("POST", "PUT", "GET")),
            _o("timeout", "float", "seconds to wait for a reply", 10.0, minimum=0.001),
            _o("result", "string", "payload field that receives the reply", "response"),
        ),
        f"{_PRC}:HttpRequest",
    ),
    AppSpec(
        "python",
        _P,
        "Calls a Python function (module:function) per message, or per batch.",
        (
            _req(
                "function",
                "string",
                "module:function; returns a payload, a list of payloads or None",
            ),
            _o("batch", "bool", "call the function once per batch with a list of payloads", False),
        ),
        f"{_PRC}:PythonFunction",
    ),
    AppSpec(
        "log",
        _K,
        "Logs each message.",
        (
            _o(
                "level",
                "choice",
                "log level",
                "INFO",
                choices=("DEBUG", "INFO", "WARNING", "ERROR"),
            ),
            _o("expression", "expression", "what to log", "payload"),
        ),
        f"{_SNK}:LogSink",
    ),
    AppSpec(
        "file",
        _K,
        "Appends each message's payload to a file (JSON lines or CSV).",
        (
            _req("path", "path", "file to append to (relative: in the data folder)"),
            _o("format", "choice", "file format", "jsonl", choices=_FORMAT),
        ),
        f"{_SNK}:FileSink",
    ),
    AppSpec(
        "sql",
        _K,
        "Inserts each payload as a row of a table (any SQLAlchemy URL).",
        (
            _req("url", "database", "database URL; sqlite:///events.db is in the data folder"),
            _req("table", "string", "table name; created with the first batch's fields if missing"),
        ),
        f"{_SNK}:SqlSink",
    ),
    AppSpec(
        "throughput",
        _K,
        "Counts messages; logs messages/s and end-to-end latency percentiles.",
        (
            _o("every", "int", "log a line every N messages", 10000, minimum=1),
            _o("report", "path", "file rewritten with a JSON summary after each batch", ""),
        ),
        f"{_SNK}:ThroughputSink",
    ),
)

#: (name, role) -> spec
CATALOGUE: dict[tuple[str, Role], AppSpec] = {(a.name, a.role): a for a in _APPS}


def app_spec(name: str, role: Role) -> AppSpec:
    """The spec of app ``name`` in ``role``, or an OptionError naming what exists."""
    spec = CATALOGUE.get((name, role))
    if spec is not None:
        return spec
    other = [r for (n, r) in CATALOGUE if n == name]
    if other:
        raise OptionError(
            "WRONG_ROLE",
            f"{name!r} is a {' and a '.join(other)}; it cannot be used as a {role} here",
        )
    known = ", ".join(sorted(n for (n, r) in CATALOGUE if r == role))
    raise OptionError("UNKNOWN_APP", f"no {role} app named {name!r}; {role}s: {known}")


def role_of(has_input: bool, has_output: bool) -> Role:
    if has_input and has_output:
        return Role.PROCESSOR
    if has_output:
        return Role.SOURCE
    if has_input:
        return Role.SINK
    raise OptionError("LONELY_APP", "an app alone needs an input or output destination")


@dataclass(frozen=True)
class ValidatedApp:
    node: AppNode
    spec: AppSpec
    options: dict[str, Any]


def validate_stream(
    tree: StreamNode, definition: str, settings: Settings | None = None
) -> list[ValidatedApp]:
    """Check every app and option of a parsed stream; DslError at the first problem.

    Paths are checked against the folders ``settings`` (default: the process's) allow.
    """
    paths = StreamPaths.of(settings or get_settings())
    result: list[ValidatedApp] = []
    last = len(tree.apps) - 1
    for i, node in enumerate(tree.apps):
        has_input = i > 0 or tree.source is not None
        has_output = i < last or tree.sink is not None
        try:
            spec = app_spec(node.name, role_of(has_input, has_output))
            options = spec.resolve(node.option_map(), paths)
        except OptionError as exc:
            where = next((o.position for o in node.options if o.key == exc.key), node.position)
            raise DslError(exc.code, exc.message, definition, where) from None
        result.append(ValidatedApp(node, spec, options))
    return result
