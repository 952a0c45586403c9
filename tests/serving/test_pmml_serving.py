"""A PMML document served like any other model (the PMML evaluator is its own module)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from conveyor.config import Settings

from .conftest import Serve

pytest.importorskip("conveyor.models.pmml")

PMML = """<?xml version="1.0" encoding="UTF-8"?>
<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4">
  <Header description="y = 1 + 2a + 3b"/>
  <DataDictionary numberOfFields="3">
    <DataField name="a" optype="continuous" dataType="double"/>
    <DataField name="b" optype="continuous" dataType="double"/>
    <DataField name="y" optype="continuous" dataType="double"/>
  </DataDictionary>
  <RegressionModel functionName="regression">
    <MiningSchema>
      <MiningField name="a"/>
      <MiningField name="b"/>
      <MiningField name="y" usageType="target"/>
    </MiningSchema>
    <RegressionTable intercept="1">
      <NumericPredictor name="a" coefficient="2"/>
      <NumericPredictor name="b" coefficient="3"/>
    </RegressionTable>
  </RegressionModel>
</PMML>
"""


def test_pmml_regression_over_every_protocol(
    tmp_path: Path, settings: Settings, serve: Serve
) -> None:
    path = tmp_path / "linear.pmml"
    path.write_text(PMML)
    base = serve(path, settings)
    rows = [{"a": 1.0, "b": 2.0}, {"a": -1.0, "b": 0.5}]
    expected = [9.0, 0.5]
    r = httpx.post(f"{base}/invocations", json={"dataframe_records": rows})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == pytest.approx(expected)
    r = httpx.post(
        f"{base}/v2/models/linear/infer",
        json={
            "inputs": [
                {"name": "a", "shape": [2], "datatype": "FP64", "data": [1.0, -1.0]},
                {"name": "b", "shape": [2], "datatype": "FP64", "data": [2.0, 0.5]},
            ]
        },
    )
    assert r.status_code == 200, r.text
    first = r.json()["outputs"][0]
    assert first["data"] == pytest.approx(expected)
    r = httpx.post(f"{base}/predict", json=[{"a": "x", "b": 1.0}])
    assert r.status_code == 400
    assert r.json()["details"][0]["field"] == "a"


def test_records_without_any_field_are_a_400_naming_the_fields(
    tmp_path: Path, settings: Settings, serve: Serve
) -> None:
    path = tmp_path / "linear.pmml"
    path.write_text(PMML)  # both fields optional: PMML scores missing values
    base = serve(path, settings)
    for route, body in [
        ("/predict", [{}]),
        ("/predict", {}),
        ("/invocations", {"dataframe_records": [{}]}),
        ("/v1/models/linear:predict", {"instances": [{}]}),
    ]:
        r = httpx.post(f"{base}{route}", json=body)
        assert r.status_code == 400, (route, body, r.text)
        assert "no value for any input field" in r.json()["error"]
        assert "at least one of a, b" in r.json()["error"]
