"""PMML models, evaluated in NumPy without a JVM.

``FORMAT.load(path)`` parses a PMML 3.x-4.4 document (refusing DTDs and
entities), compiles its model once, and returns a :class:`PmmlModel` whose
``predict`` scores whole batches as arrays::

    from conveyor.models import load_model
    model = load_model("churn.pmml")
    model.signature.inputs        # from the DataDictionary and MiningSchema
    model.predict(df)             # every OutputField, by name
"""

from __future__ import annotations

from pathlib import Path

from conveyor.errors import ModelError
from conveyor.models.pmml._xml import parse
from conveyor.models.pmml.document import PmmlModel
from conveyor.models.pmml.errors import InvalidInputError

__all__ = ["FORMAT", "InvalidInputError", "PmmlFormat", "PmmlModel", "load", "loads"]


def loads(data: bytes | str, source: str = "<pmml>") -> PmmlModel:
    """Compile a PMML document given as bytes or text."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return PmmlModel(parse(raw, source))


def load(path: str | Path) -> PmmlModel:
    """Read and compile a PMML file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelError(f"{p}: cannot read the PMML file ({exc.strerror})") from exc
    return loads(data, str(p))


class PmmlFormat:
    """The PMML model format: ``.pmml`` files; loading never executes code, so trust is moot."""

    name = "pmml"
    suffixes = (".pmml",)

    def load(self, path: Path, *, trusted: bool = False) -> PmmlModel:
        return load(path)


FORMAT = PmmlFormat()
