"""Conveyor's PMML evaluator on small documents of its own (tests/pmml/data)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conveyor.errors import ModelError
from conveyor.models import load_model
from conveyor.models.pmml import loads

DATA = Path(__file__).parent / "data"

TREE_ROWS = {
    "colour": ["red", "green", "blue", None, "purple", "red"],
    "size": [20.0, 5.0, 5.0, 50.0, 50.0, None],
    "weight": [5.0, 9.0, None, 1.0, 1.0, 1.0],
}


def test_load_model_gives_a_pmml_model_with_a_signature() -> None:
    model = load_model(DATA / "tree_missing.pmml")
    sig = model.signature
    assert model.format == "pmml"
    assert sig.task == "classification"
    assert sig.classes == ("yes", "no")
    inputs = {f.name: f for f in sig.inputs}
    assert list(inputs) == ["colour", "size", "weight"]
    assert inputs["colour"].dtype == "string"
    assert inputs["colour"].values == ("red", "green", "blue")
    assert inputs["size"].dtype == "float64"
    assert [f.name for f in sig.outputs] == ["label", "predicted", "p_yes", "node"]


def test_tree_routes_missing_and_invalid_values_as_the_document_says() -> None:
    model = load_model(DATA / "tree_missing.pmml")
    out = model.predict(TREE_ROWS)
    # row 3: weight missing -> replaced by 7; rows 4-5: colour missing/invalid -> defaultChild;
    # row 6: size missing and the root has no default child -> the root's prediction
    assert list(out["node"]) == [
        "large-red",
        "small-heavy",
        "small-light",
        "large-other",
        "large-other",
        "root",
    ]
    assert list(out["label"]) == ["yes", "no", "yes", "no", "no", "no"]
    np.testing.assert_allclose(out["p_yes"], [0.75, 0.3, 0.9, 0.125, 0.125, 0.5])


def test_a_dataframe_and_records_score_like_columns() -> None:
    model = load_model(DATA / "tree_missing.pmml")
    by_columns = model.predict(TREE_ROWS)
    frame = pd.DataFrame(TREE_ROWS)
    records = frame.replace({np.nan: None}).to_dict("records")
    for batch in (frame, records):
        got = model.predict(batch)
        assert list(got["node"]) == list(by_columns["node"])
        np.testing.assert_allclose(got["p_yes"], by_columns["p_yes"])


def test_an_out_of_range_value_is_rejected_naming_the_field_and_row() -> None:
    model = load_model(DATA / "tree_missing.pmml")
    with pytest.raises(ModelError, match=r"'size', row 1: 150\.0 is not a valid value") as info:
        model.predict({"colour": ["red", "red"], "size": [1.0, 150.0], "weight": [1.0, 1.0]})
    # also a ValueError: callers such as the scoring service answer 422, not 500
    assert isinstance(info.value, ValueError)


def test_float_math_context_sums_in_32_bits() -> None:
    model = load_model(DATA / "gbm_float.pmml")
    out = model.predict({"x": np.array([1.0, 2.5, np.nan])})
    f = np.float32
    expected_first = (f(0.5) + f(0.3333333)) + f(-0.7)
    expected_second = (f(0.5) + f(0.1)) + f(0.2)
    assert out["y"].dtype == np.float32
    assert out["y"][0] == expected_first
    assert out["y"][1] == expected_second
    # a missing x fails every split: each stump returns its root score
    assert out["y"][2] == (f(0.5) + f(0.1)) + f(-0.7)


def test_transformations_user_functions_and_output_expressions() -> None:
    model = load_model(DATA / "logistic_xform.pmml")
    batch = pd.DataFrame(
        {
            "age": pd.array([25, 40], dtype="Int64"),
            "income": [50000.0, None],
            "region": ["north", "south"],
        }
    )
    out = model.predict(batch)
    p1 = 1 / (1 + math.exp(-2.0))
    p2 = 1 / (1 + math.exp(0.9))
    np.testing.assert_allclose(out["churn_probability"], [p1, p2], rtol=1e-15)
    assert list(out["risk"]) == ["high", "low"]
    assert out["churn"].dtype == np.int64
    assert list(out["churn"]) == [1, 0]


def test_an_unsupported_element_is_named_with_its_line() -> None:
    doc = """<?xml version="1.0"?>
<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4">
  <DataDictionary>
    <DataField name="x" optype="continuous" dataType="double"/>
  </DataDictionary>
  <BaselineModel functionName="regression">
    <MiningSchema><MiningField name="x"/></MiningSchema>
  </BaselineModel>
</PMML>"""
    with pytest.raises(ModelError, match=r"line 6: <BaselineModel> is not supported"):
        loads(doc, "doc.pmml")


def test_an_unknown_function_is_named_with_its_line() -> None:
    doc = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4">
  <DataDictionary>
    <DataField name="x" optype="continuous" dataType="double"/>
    <DataField name="y" optype="continuous" dataType="double"/>
  </DataDictionary>
  <RegressionModel functionName="regression">
    <MiningSchema><MiningField name="y" usageType="target"/><MiningField name="x"/></MiningSchema>
    <LocalTransformations>
      <DerivedField name="z" optype="continuous" dataType="double">
        <Apply function="frobnicate"><FieldRef field="x"/></Apply>
      </DerivedField>
    </LocalTransformations>
    <RegressionTable intercept="1"><NumericPredictor name="z" coefficient="2"/></RegressionTable>
  </RegressionModel>
</PMML>"""
    model = loads(doc, "doc.pmml")
    with pytest.raises(ModelError, match=r"doc\.pmml, line 10: function 'frobnicate'"):
        model.predict({"x": [1.0]})


def test_entities_and_doctypes_are_refused() -> None:
    doc = """<?xml version="1.0"?>
<!DOCTYPE PMML [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<PMML version="4.4"><Header>&xxe;</Header></PMML>"""
    with pytest.raises(ModelError, match="document type declarations and entities are not allowed"):
        loads(doc, "evil.pmml")


def test_malformed_xml_and_bad_batches_give_clear_errors() -> None:
    with pytest.raises(ModelError, match=r"line 1: not well-formed"):
        loads("<PMML><Header></PMML>", "broken.pmml")
    model = load_model(DATA / "gbm_float.pmml")
    with pytest.raises(ModelError, match="not a int"):
        model.predict(42)  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="column 'y' has 1 values, other columns have 2"):
        model.predict({"x": [1.0, 2.0], "y": [1.0]})


def test_scorecard_sums_points_and_ranks_reason_codes() -> None:
    model = load_model(DATA / "scorecard.pmml")
    out = model.predict({"age": [25.0, 40.0], "status": ["owner", "tenant"]})
    # 10 + 5 + 20 and 10 + 25 + 0; AGE lost 15 then -5, STATUS lost -5 then 15
    assert list(out["points"]) == [35.0, 35.0]
    assert list(out["reason1"]) == ["AGE", "STATUS"]
    assert list(out["reason2"]) == ["STATUS", "AGE"]
    with pytest.raises(ModelError, match="'statusScore' matches"):
        model.predict({"age": [25.0], "status": [None]})


def test_a_pmml_model_satisfies_the_model_protocol() -> None:
    from conveyor.models import Model

    model = load_model(DATA / "gbm_float.pmml")
    assert isinstance(model, Model)
    assert model.signature.to_json()["task"] == "regression"


@pytest.mark.parametrize(
    ("strategy", "p_a_missing"),
    [
        # 0.75 * 60/75 + 0.25 * 5/25
        ("weightedConfidence", 0.75 * 0.8 + 0.25 * 0.2),
        # (60 + 5) / (75 + 25)
        ("aggregateNodes", 65 / 100),
    ],
)
def test_unknown_splits_combine_the_leaves(strategy: str, p_a_missing: float) -> None:
    doc = (DATA / "tree_split.pmml").read_text().replace("STRATEGY", strategy)
    out = loads(doc).predict({"x": [-1.0, 1.0, None]})
    np.testing.assert_allclose(out["probability(a)"], [0.8, 0.2, p_a_missing], rtol=1e-15)
    assert list(out["label"]) == ["a", "b", "a"]


def test_an_unsupported_predicate_in_a_tree_is_refused_at_load() -> None:
    doc = """<PMML version="4.4"><DataDictionary>
<DataField name="x" optype="continuous" dataType="double"/></DataDictionary>
<TreeModel functionName="regression"><MiningSchema><MiningField name="x"/></MiningSchema>
<Node score="1"><True/><Node score="2">
<SimplePredicate field="x" operator="between" value="1"/></Node></Node></TreeModel></PMML>"""
    with pytest.raises(ModelError, match=r"t\.pmml, line 5: SimplePredicate operator 'between'"):
        loads(doc, "t.pmml")


def test_nearest_neighbours_vote_and_report_their_ids() -> None:
    model = load_model(DATA / "knn.pmml")
    out = model.predict({"x": [0.1, 5.4], "y": [0.0, 4.9]})
    assert list(out["kind"]) == ["low", "high"]
    assert list(out["nearest"]) == ["a", "d"]
    assert list(out["second"]) == ["b", "e"]
    np.testing.assert_allclose(out["d1"], [0.1, math.hypot(0.4, 0.1)])
    np.testing.assert_allclose(out["p_high"], [1 / 3, 2 / 3])


def test_integer_categories_are_integers_in_the_signature() -> None:
    model = load_model(DATA / "logistic_xform.pmml")
    classes = model.signature.classes
    assert classes == (1, 0)
    assert [type(c) for c in classes] == [int, int]
    inputs = {f.name: f for f in model.signature.inputs}
    assert inputs["age"].dtype == "int64"
    assert inputs["region"].values == ("north", "south")


@pytest.mark.parametrize(("no_true_child", "expected"), [("returnLastPrediction", 9.0), ("", None)])
def test_a_missing_value_never_takes_the_complementary_branch(
    no_true_child: str, expected: float | None
) -> None:
    strategy = f'noTrueChildStrategy="{no_true_child}"' if no_true_child else ""
    doc = f"""<PMML version="4.4"><DataDictionary>
<DataField name="x" optype="continuous" dataType="double"/>
<DataField name="y" optype="continuous" dataType="double"/></DataDictionary>
<TreeModel functionName="regression" {strategy}>
<MiningSchema><MiningField name="y" usageType="target"/><MiningField name="x"/></MiningSchema>
<Node score="9"><True/>
<Node score="1"><SimplePredicate field="x" operator="lessOrEqual" value="0"/></Node>
<Node score="2"><SimplePredicate field="x" operator="greaterThan" value="0"/></Node>
</Node></TreeModel></PMML>"""
    model = loads(doc)
    for batch in ({"x": [-1.0, 1.0, None]}, {"x": [None]}):
        out = model.predict(batch)["y"]
        last = out[-1]
        assert math.isnan(last) if expected is None else last == expected, batch
    assert list(model.predict({"x": [-1.0, 1.0, None]})["y"][:2]) == [1.0, 2.0]
