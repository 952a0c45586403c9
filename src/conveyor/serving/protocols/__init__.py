"""The wire protocols a scoring service speaks, one module each, and their registry.

``oip`` (Open Inference Protocol V2), ``v1`` (KServe V1), ``mlflow``
(``/invocations``) and ``records`` (``/predict``) each turn their payload
into typed columns and return a ``Scoring``: those columns, and how to
shape the answer their clients expect from the model's outputs. Each module
exports a :class:`~.base.Protocol` (``PROTOCOL``): its routes, its OpenAPI
paths and how it resolves paths naming another model. The app and the
OpenAPI document are built from :data:`PROTOCOLS`, so a new protocol is a
new module plus one line here.
"""

from __future__ import annotations

from conveyor.serving.protocols import mlflow, oip, records, v1
from conveyor.serving.protocols.base import Handler, Page, Protocol, Route, Site

__all__ = ["PROTOCOLS", "Handler", "Page", "Protocol", "Route", "Site"]

#: Every protocol the scoring service speaks, in the OpenAPI document's order.
PROTOCOLS: tuple[Protocol, ...] = (
    oip.PROTOCOL,
    v1.PROTOCOL,
    mlflow.PROTOCOL,
    records.PROTOCOL,
)
