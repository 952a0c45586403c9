"""Segmentations, clustering and general regression on small inline documents."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conveyor.errors import ModelError
from conveyor.models.pmml import loads

HEAD = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><DataDictionary>
<DataField name="x" optype="continuous" dataType="double"/>
<DataField name="y" optype="continuous" dataType="double"/>
<DataField name="c" optype="categorical" dataType="string"><Value value="a"/><Value
value="b"/></DataField>
</DataDictionary>"""


def _stump(score_low: float, score_high: float, output: str = "") -> str:
    """A regression tree: score_low when x <= 0, else score_high."""
    return f"""<TreeModel functionName="regression">
<MiningSchema><MiningField name="x"/></MiningSchema>{output}
<Node><True/>
<Node score="{score_low}"><SimplePredicate field="x" operator="lessOrEqual" value="0"/></Node>
<Node score="{score_high}"><SimplePredicate field="x" operator="greaterThan" value="0"/></Node>
</Node></TreeModel>"""


def _ensemble(method: str, segments: list[tuple[str, float]]) -> str:
    body = "".join(
        f'<Segment id="{i}" weight="{w}"><True/>{model}</Segment>'
        for i, (model, w) in enumerate(segments, start=1)
    )
    return f"""{HEAD}<MiningModel functionName="regression">
<MiningSchema><MiningField name="y" usageType="target"/><MiningField name="x"/></MiningSchema>
<Segmentation multipleModelMethod="{method}">{body}</Segmentation></MiningModel></PMML>"""


STUMPS = [(_stump(1.0, 10.0), 1.0), (_stump(2.0, 20.0), 2.0), (_stump(6.0, 60.0), 1.0)]


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("sum", [9.0, 90.0]),
        ("average", [3.0, 30.0]),
        ("weightedAverage", [(1 + 4 + 6) / 4, (10 + 40 + 60) / 4]),
        ("median", [2.0, 20.0]),
        ("weightedMedian", [2.0, 20.0]),
        ("max", [6.0, 60.0]),
    ],
)
def test_regression_segments_combine_by_method(method: str, expected: list[float]) -> None:
    model = loads(_ensemble(method, STUMPS))
    out = model.predict({"x": [-1.0, 1.0]})
    np.testing.assert_allclose(out["y"], expected, rtol=1e-15)


def test_select_first_takes_the_first_segment_whose_predicate_holds() -> None:
    doc = f"""{HEAD}<MiningModel functionName="regression">
<MiningSchema><MiningField name="y" usageType="target"/><MiningField name="x"/>
<MiningField name="c"/></MiningSchema>
<Segmentation multipleModelMethod="selectFirst">
<Segment><SimplePredicate field="c" operator="equal" value="a"/>{_stump(1.0, 2.0)}</Segment>
<Segment><True/>{_stump(3.0, 4.0)}</Segment>
</Segmentation></MiningModel></PMML>"""
    out = loads(doc).predict({"x": [-1.0, 1.0, 1.0], "c": ["a", "b", None]})
    assert list(out["y"]) == [1.0, 4.0, 4.0]


def test_model_chain_feeds_output_fields_to_later_segments() -> None:
    first = _stump(
        1.0,
        2.0,
        output='<Output><OutputField name="stage1" feature="predictedValue" dataType="double"'
        ' optype="continuous"/></Output>',
    )
    second = """<RegressionModel functionName="regression">
<MiningSchema><MiningField name="stage1"/></MiningSchema>
<RegressionTable intercept="0.5"><NumericPredictor name="stage1"
coefficient="10"/></RegressionTable>
</RegressionModel>"""
    doc = f"""{HEAD}<MiningModel functionName="regression">
<MiningSchema><MiningField name="y" usageType="target"/><MiningField name="x"/></MiningSchema>
<Segmentation multipleModelMethod="modelChain">
<Segment><True/>{first}</Segment><Segment><True/>{second}</Segment>
</Segmentation></MiningModel></PMML>"""
    out = loads(doc).predict({"x": [-1.0, 1.0]})
    assert list(out["y"]) == [10.5, 20.5]


def test_majority_vote_counts_the_trees_votes() -> None:
    def voter(low: str, high: str) -> str:
        return f"""<TreeModel functionName="classification">
<MiningSchema><MiningField name="x"/></MiningSchema>
<Node><True/>
<Node score="{low}"><SimplePredicate field="x" operator="lessOrEqual" value="0"/></Node>
<Node score="{high}"><SimplePredicate field="x" operator="greaterThan" value="0"/></Node>
</Node></TreeModel>"""

    segments = "".join(
        f"<Segment><True/>{voter(lo, hi)}</Segment>"
        for lo, hi in [("a", "b"), ("a", "a"), ("b", "b")]
    )
    doc = f"""{HEAD}<MiningModel functionName="classification">
<MiningSchema><MiningField name="c" usageType="target"/><MiningField name="x"/></MiningSchema>
<Output><OutputField name="p_a" feature="probability" value="a" dataType="double"
optype="continuous"/>
</Output>
<Segmentation multipleModelMethod="majorityVote">{segments}</Segmentation></MiningModel></PMML>"""
    model = loads(doc)
    assert model.signature.classes == ("a", "b")
    out = model.predict({"x": [-1.0, 1.0]})
    assert list(out["c"]) == ["a", "b"]
    np.testing.assert_allclose(out["p_a"], [2 / 3, 1 / 3])


def test_clustering_picks_the_nearest_centre_and_reports_distances() -> None:
    doc = f"""{HEAD}<ClusteringModel functionName="clustering" modelClass="centerBased"
numberOfClusters="2">
<MiningSchema><MiningField name="x"/><MiningField name="y"/></MiningSchema>
<Output><OutputField name="cluster" feature="predictedValue" dataType="string"
optype="categorical"/>
<OutputField name="name" feature="predictedDisplayValue" dataType="string" optype="categorical"/>
<OutputField name="d_far" feature="affinity" value="far" dataType="double" optype="continuous"/>
</Output>
<ComparisonMeasure kind="distance"><euclidean/></ComparisonMeasure>
<ClusteringField field="x"/><ClusteringField field="y"/>
<Cluster id="near" name="origin"><Array n="2" type="real">0 0</Array></Cluster>
<Cluster id="far" name="away"><Array n="2" type="real">3 4</Array></Cluster>
</ClusteringModel></PMML>"""
    model = loads(doc)
    assert model.signature.task == "clustering"
    out = model.predict({"x": [0.5, 3.0], "y": [0.0, 3.0]})
    assert list(out["cluster"]) == ["near", "far"]
    assert list(out["name"]) == ["origin", "away"]
    np.testing.assert_allclose(out["d_far"], [math.hypot(2.5, 4.0), 1.0])


def test_general_regression_logit_with_a_factor() -> None:
    doc = f"""{HEAD}<GeneralRegressionModel modelType="generalizedLinear" functionName="regression"
 linkFunction="logit">
<MiningSchema><MiningField name="y" usageType="target"/><MiningField name="x"/>
<MiningField name="c"/></MiningSchema>
<ParameterList><Parameter name="p0"/><Parameter name="p1"/><Parameter name="p2"/></ParameterList>
<FactorList><Predictor name="c"/></FactorList>
<CovariateList><Predictor name="x"/></CovariateList>
<PPMatrix><PPCell value="1" predictorName="x" parameterName="p1"/>
<PPCell value="b" predictorName="c" parameterName="p2"/></PPMatrix>
<ParamMatrix><PCell parameterName="p0" beta="-1"/><PCell parameterName="p1" beta="0.5"/>
<PCell parameterName="p2" beta="2"/></ParamMatrix>
</GeneralRegressionModel></PMML>"""
    out = loads(doc).predict({"x": [2.0, 2.0, None], "c": ["a", "b", "a"]})
    expected = [1 / (1 + math.exp(-0.0)), 1 / (1 + math.exp(-2.0))]
    np.testing.assert_allclose(out["y"][:2], expected, rtol=1e-15)
    assert math.isnan(out["y"][2])


def test_an_unsupported_combination_method_names_the_segmentation() -> None:
    doc = _ensemble("majorityVote", STUMPS)
    line = next(i for i, text in enumerate(doc.splitlines(), 1) if "<Segmentation" in text)
    with pytest.raises(ModelError, match=rf"line {line}: multipleModelMethod='majorityVote'"):
        loads(doc)
