"""Request errors: what the service answers with a 4xx (or 5xx) and a JSON ``{"error": ...}`` body.

Every protocol handler raises :class:`RequestError` (or a subclass) for
anything wrong with a request; the app turns it into a response whose body
is ``{"error": "<one sentence>", "details": [...]}``. ``error`` is what the
Open Inference Protocol and MLflow clients show; ``details`` lists every
offending field with what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.errors import UsageError

__all__ = ["InvalidInput", "Problem", "RequestError"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one field of a request."""

    field: str
    error: str
    expected: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"field": self.field, "error": self.error}
        if self.expected is not None:
            data["expected"] = self.expected
        return data

    def __str__(self) -> str:
        tail = f" (expected {self.expected})" if self.expected else ""
        return f"{self.field}: {self.error}{tail}"


class RequestError(UsageError):
    """A request the service refuses; ``status`` is the HTTP status to answer with."""

    status = 400
    kind = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        kind: str | None = None,
        details: list[Problem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        if kind is not None:
            self.kind = kind
        self.details = details or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"error": self.message}
        if self.details:
            data["details"] = [p.to_json() for p in self.details]
        return data


class InvalidInput(RequestError):
    """Inputs that do not match the model's signature; names every offending field."""

    kind = "invalid_input"

    def __init__(self, problems: list[Problem]) -> None:
        shown = "; ".join(str(p) for p in problems[:10])
        more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        super().__init__(f"invalid input: {shown}{more}", details=problems)
