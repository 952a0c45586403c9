"""The score processor: a model loaded once, each micro-batch scored in one predict call.

Each message gets ``--prediction`` (and, for classifiers, ``--probabilities``
as ``{class: probability}``) in its payload, and lineage headers:
``model-digest``, ``model-run`` (the run that trained it, when known),
``model-format`` and ``model-source``.

Payloads are checked and coerced by the same code as ``conveyor serve``'s
(:class:`conveyor.serving.columns.ColumnBuilder`): what the service refuses
goes to the dead-letter destination with the service's message, and extra
fields are left out unless ``--strict-inputs``.
"""

from __future__ import annotations

from typing import Any

from conveyor.streams.apps.base import AppContext, Routed
from conveyor.streams.errors import StreamError
from conveyor.streams.messages import Message

__all__ = ["Score"]

_PROBABILITIES = "probabilities"


def _as_list(values: Any) -> list[Any]:
    """An output column as Python values (an array's tolist(), or the sequence itself)."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


class Score:
    def __init__(self, context: AppContext) -> None:
        from conveyor.serving.resolve import resolve_model_uri

        o = context.options
        # Loading failures (no file, untrusted pickle, bad format) are ModelErrors: the
        # runtime reports them and exits before consuming anything.
        self.resolved = resolve_model_uri(
            o["model"],
            context.settings,
            trusted=o["trusted"],
            run_id=o.get("model-run-id") or None,
            expect_digest=o.get("model-digest") or None,
            trusted_types=tuple(
                t.strip() for t in str(o.get("model-trusted-types") or "").split(",") if t.strip()
            ),
        )
        self.model = self.resolved.model
        self.signature = self.model.signature
        self.fields = [f.strip() for f in o["fields"].split(",") if f.strip()]
        self.prediction_field: str = o["prediction"]
        self.probabilities_field: str = o["probabilities"]
        self.lineage = {
            "model-digest": self.resolved.digest,
            "model-format": self.model.format,
            "model-source": self.resolved.source,
        }
        if self.resolved.run_id:
            self.lineage["model-run"] = self.resolved.run_id
        self.strict = bool(o.get("strict-inputs", False))
        inputs = self.signature.inputs
        #: The tensor field --fields=a,b,c fills from named payload fields.
        self.tensor_field = (
            inputs[0].name if len(inputs) == 1 and len(inputs[0].shape) == 1 else None
        )
        classes = self.signature.classes
        self.class_labels = (
            [str(c.item() if hasattr(c, "item") else c) for c in classes] if classes else None
        )

    def _columns(self, payloads: list[dict[str, Any]]) -> dict[str, Any]:
        """Typed columns, checked and coerced exactly as ``conveyor serve`` does.

        A payload the service would refuse raises, so the runtime retries it
        alone and then dead-letters it with the service's message.
        """
        from conveyor.serving.columns import ColumnBuilder
        from conveyor.serving.errors import RequestError

        records = payloads
        tensor = self.tensor_field
        if tensor is not None and self.fields:
            missing = [f for f in self.fields if any(f not in p for p in payloads)]
            if missing:
                raise StreamError(f"score: a message lacks the field {missing[0]!r}")
            records = [{tensor: [p[f] for f in self.fields]} for p in payloads]
        try:
            return ColumnBuilder(self.signature, strict=self.strict).from_records(records)
        except RequestError as exc:
            raise StreamError(f"score: {exc.message}") from None

    def process(self, messages: list[Message]) -> list[Message | Routed]:
        payloads = [m.payload for m in messages]
        if not all(type(p) is dict for p in payloads):
            raise StreamError("score: payloads must be objects whose fields are the model inputs")
        outputs = self.model.predict(self._columns(payloads))
        names = [n for n in outputs if n != _PROBABILITIES]
        # tolist() turns a whole column into Python values at once (NumPy scalars are not JSON).
        predictions = _as_list(outputs[names[0]]) if names else None
        proba = outputs.get(_PROBABILITIES)
        rows = _as_list(proba) if proba is not None else None
        labels = self.class_labels
        # The messages were decoded for this app alone: annotate them in place.
        for i, m in enumerate(messages):
            payload = m.payload
            if predictions is not None:
                payload[self.prediction_field] = predictions[i]
            if rows is not None:
                row = rows[i]
                payload[self.probabilities_field] = (
                    dict(zip(labels, row, strict=True))
                    if labels is not None and len(labels) == len(row)
                    else row
                )
            m.headers.update(self.lineage)
        return list(messages)

    def close(self) -> None:
        pass
