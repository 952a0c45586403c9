"""Request validation against a signature, without a server."""

from __future__ import annotations

import pytest

from conveyor.models.base import Field, Signature
from conveyor.serving.columns import ColumnBuilder

SIG = Signature(
    inputs=(
        Field("colour", "string", optional=True, values=("red", "blue")),
        Field("size", "float64"),
    )
)


def test_an_optional_categorical_field_accepts_a_missing_value() -> None:
    columns = ColumnBuilder(SIG).from_records([{"colour": None, "size": 1.0}, {"size": 2.0}])
    assert columns["colour"].tolist() == [None, None]


def test_an_unknown_categorical_value_is_named() -> None:
    from conveyor.serving.errors import InvalidInput

    with pytest.raises(InvalidInput) as caught:
        ColumnBuilder(SIG).from_records([{"colour": "green", "size": 1.0}])
    assert "'green' is not one of the known values" in caught.value.message
