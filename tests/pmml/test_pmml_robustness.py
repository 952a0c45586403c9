"""Any batch either scores (one output per row) or fails with a ModelError: never a traceback."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.errors import ModelError
from conveyor.models import load_model
from conveyor.models.pmml import loads

DATA = Path(__file__).parent / "data"
DOCUMENTS = ["tree_missing", "gbm_float", "logistic_xform", "scorecard", "knn"]

cells = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["red", "blue", "north", "south", "owner", "tenant", "", "NaN", "1e3", "x"]),
)


@pytest.mark.parametrize("name", DOCUMENTS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_batches_score_or_fail_cleanly(name: str, data: st.DataObject) -> None:
    model = load_model(DATA / f"{name}.pmml")
    fields = [f.name for f in model.signature.inputs]
    rows = data.draw(st.integers(min_value=0, max_value=6))
    batch: dict[str, Any] = {
        f: data.draw(st.lists(cells, min_size=rows, max_size=rows)) for f in fields
    }
    try:
        out = model.predict(batch)
    except ModelError:
        return
    for column in out.values():
        assert len(column) == rows


_ATTRIBUTE = re.compile(r'(\w[\w:-]*)="([^"]*)"')


@pytest.mark.parametrize("name", DOCUMENTS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_documents_load_or_fail_cleanly(name: str, data: st.DataObject) -> None:
    text = (DATA / f"{name}.pmml").read_text()
    spots = list(_ATTRIBUTE.finditer(text))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        spot = data.draw(st.sampled_from(spots))
        value = data.draw(st.sampled_from(["", "abc", "-1", "1e999", "NaN", "0", "x y"]))
        start, end = spot.span(2)
        text = text[:start] + value + text[end:]
        spots = list(_ATTRIBUTE.finditer(text))
    try:
        model = loads(text, f"{name}.pmml")
        model.predict({f.name: [None, "1", 2.5] for f in model.signature.inputs})
    except ModelError:
        return
