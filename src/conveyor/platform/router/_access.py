"""The router's access log: one :class:`AccessRecord` per exchange."""

from __future__ import annotations

import logging
from dataclasses import dataclass

__all__ = ["AccessRecord", "access_log"]

access_log = logging.getLogger("conveyor.platform.router.access")


@dataclass(frozen=True)
class AccessRecord:
    """One line of the router's access log."""

    client: str
    method: str
    path: str
    status: int
    bytes_sent: int
    app: str
    instance: str
    request_id: str
    total_ms: float
    app_ms: float

    @property
    def router_ms(self) -> float:
        return max(0.0, self.total_ms - self.app_ms)

    def format(self) -> str:
        return (
            f'{self.client} "{self.method} {self.path}" {self.status} {self.bytes_sent} '
            f"app={self.app or '-'} instance={self.instance or '-'} "
            f"request_id={self.request_id} total_ms={self.total_ms:.2f} "
            f"app_ms={self.app_ms:.2f} router_ms={self.router_ms:.2f}"
        )
