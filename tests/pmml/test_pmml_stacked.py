"""Forests scored with all their trees stacked into one graph give what each tree gives alone.

The forest below mixes what the stacked graph has to translate: numeric
comparisons, integer sets (isIn / isNotIn), string equality, compound
predicates (and / or / surrogate), the missing value strategies none,
defaultChild and lastPrediction, and both noTrueChildStrategy values. The
expected sums are worked out by hand from the PMML rules; the same trees are
then scored one by one (each as its own document, which the per-tree path
evaluates) on random rows with missing values and must agree exactly.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from conveyor.models.pmml import loads, mining


@pytest.fixture(autouse=True)
def _always_stacked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Walk the graph for batches of every size: these trees are small enough that big
    batches would otherwise be scored tree by tree (which the comparison runs alone)."""
    monkeypatch.setattr(mining, "_SMALL_TREES", 0)


HEAD = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><DataDictionary>
<DataField name="x" optype="continuous" dataType="double"/>
<DataField name="k" optype="categorical" dataType="integer"/>
<DataField name="c" optype="categorical" dataType="string"/>
<DataField name="y" optype="continuous" dataType="double"/>
</DataDictionary>"""
SCHEMA = """<MiningSchema><MiningField name="y" usageType="target"/><MiningField name="x"/>
<MiningField name="k"/><MiningField name="c"/></MiningSchema>"""

# none / returnNullPrediction: an unknown child is passed over; no true child -> null
TREE_1 = """<TreeModel functionName="regression">{schema}
<Node score="0"><True/>
 <Node score="1"><SimplePredicate field="x" operator="lessOrEqual" value="0"/>
  <Node score="10"><SimpleSetPredicate field="k" booleanOperator="isIn">
   <Array type="int">1 2 3</Array></SimpleSetPredicate></Node>
  <Node score="20"><SimpleSetPredicate field="k" booleanOperator="isNotIn">
   <Array type="int">1 2 3</Array></SimpleSetPredicate></Node>
 </Node>
 <Node score="2"><SimplePredicate field="x" operator="greaterThan" value="0"/>
  <Node score="30"><SimplePredicate field="c" operator="equal" value="a"/></Node>
  <Node score="40"><SimplePredicate field="c" operator="notEqual" value="a"/></Node>
 </Node>
</Node></TreeModel>"""

# defaultChild / returnLastPrediction
TREE_2 = """<TreeModel functionName="regression" missingValueStrategy="defaultChild"
 noTrueChildStrategy="returnLastPrediction">{schema}
<Node score="5" defaultChild="D"><True/>
 <Node id="C" score="100"><CompoundPredicate booleanOperator="and">
  <SimplePredicate field="x" operator="greaterThan" value="-1"/>
  <SimplePredicate field="k" operator="notEqual" value="4"/></CompoundPredicate></Node>
 <Node id="D" score="200"><CompoundPredicate booleanOperator="or">
  <SimpleSetPredicate field="c" booleanOperator="isIn"><Array type="string">b "c"</Array>
  </SimpleSetPredicate>
  <SimplePredicate field="x" operator="greaterThan" value="5"/></CompoundPredicate></Node>
</Node></TreeModel>"""

# lastPrediction / returnLastPrediction, a surrogate and a True last child
TREE_3 = """<TreeModel functionName="regression" missingValueStrategy="lastPrediction"
 noTrueChildStrategy="returnLastPrediction">{schema}
<Node score="7"><True/>
 <Node score="1000"><CompoundPredicate booleanOperator="surrogate">
  <SimplePredicate field="x" operator="lessOrEqual" value="1"/>
  <SimplePredicate field="k" operator="lessOrEqual" value="2"/></CompoundPredicate>
  <Node score="1100"><SimplePredicate field="c" operator="equal" value="b"/></Node>
 </Node>
 <Node score="2000"><True/></Node>
</Node></TreeModel>"""

TREES = [TREE_1, TREE_2, TREE_3]


def _forest(method: str = "sum") -> str:
    segments = "".join(
        f'<Segment id="{i}"><True/>{tree.format(schema=SCHEMA)}</Segment>'
        for i, tree in enumerate(TREES, start=1)
    )
    return f"""{HEAD}<MiningModel functionName="regression">{SCHEMA}
<Segmentation multipleModelMethod="{method}">{segments}</Segmentation></MiningModel></PMML>"""


def _alone(tree: str) -> str:
    return f"{HEAD}{tree.format(schema=SCHEMA)}</PMML>"


NAN = math.nan
# x, k, c -> tree 1 + tree 2 + tree 3 (a null tree is left out of the sum)
ROWS = [
    ((-1.0, 2.0, "a"), 10 + 5 + 1000),  # x <= 0 and k in {1,2,3}; C and D false; E, no child
    ((3.0, 4.0, "b"), 40 + 200 + 2000),  # c != a; k == 4 fails C, c in {b,c}; x > 1 -> True
    ((NAN, 5.0, "c"), 0 + 200 + 2000),  # x unknown: T1 null; C unknown -> D; surrogate k <= 2
    ((0.5, NAN, None), 0 + 200 + 1000),  # c unknown: T1 null; C unknown -> D; E1 unknown -> E
    ((-5.0, 3.0, "z"), 10 + 5 + 1000),
    ((NAN, NAN, None), 0 + 200 + 7),  # T3: the surrogate is unknown -> lastPrediction (root)
]


def _columns(rows: list[tuple[float, float, str | None]]) -> dict[str, list[object]]:
    return {
        "x": [r[0] for r in rows],
        "k": [r[1] for r in rows],
        "c": [r[2] for r in rows],
    }


def test_stacked_forest_matches_the_sums_worked_out_by_hand() -> None:
    model = loads(_forest())
    rows = [r for r, _ in ROWS]
    expected = [float(e) for _, e in ROWS]
    assert model.predict(_columns(rows))["y"].tolist() == expected
    assert model.model._stack, "the forest was scored tree by tree, not stacked"  # type: ignore[attr-defined]
    # one row at a time takes the short walk, a big batch is walked in several chunks
    for row, value in ROWS:
        assert model.predict(_columns([row]))["y"].tolist() == [float(value)]
    many = rows * 7000
    assert model.predict(_columns(many))["y"].tolist() == expected * 7000


@pytest.mark.parametrize("method", ["sum", "average", "median", "max"])
def test_stacked_forest_agrees_with_each_tree_scored_alone(method: str) -> None:
    rng = np.random.default_rng(7)
    n = 3000
    x = rng.choice([-6.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 5.0, 6.0, NAN], n)
    k = rng.choice([1.0, 2.0, 3.0, 4.0, 5.0, NAN], n)
    c = rng.choice(np.array(["a", "b", "c", "z", None], dtype=object), n)
    columns = {"x": x.tolist(), "k": k.tolist(), "c": c.tolist()}
    alone = np.vstack([loads(_alone(tree)).predict(columns)["y"] for tree in TREES])
    got = loads(_forest(method)).predict(columns)["y"]
    for i in range(n):
        values = [v for v in alone[:, i].tolist() if not math.isnan(v)]
        if not values:
            assert math.isnan(got[i])
            continue
        if method == "sum":
            want = values[0]
            for v in values[1:]:
                want += v
        elif method == "average":
            want = values[0]
            for v in values[1:]:
                want += v
            want /= len(values)
        elif method == "median":
            want = float(np.median(values))
        else:
            want = max(values)
        assert got[i] == want, (i, x[i], k[i], c[i], alone[:, i], got[i])


def test_float_trees_compare_in_32_bits() -> None:
    # x < 0.1 in float arithmetic: 0.1 itself is not below it; the float just under it is
    doc = (
        """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><DataDictionary>
<DataField name="x" optype="continuous" dataType="float"/>
<DataField name="y" optype="continuous" dataType="float"/></DataDictionary>
<MiningModel functionName="regression" x-mathContext="float">
<MiningSchema><MiningField name="y" usageType="target"/><MiningField name="x"/></MiningSchema>
<Segmentation multipleModelMethod="sum">"""
        + "".join(
            f"""<Segment id="{i}"><True/><TreeModel functionName="regression"
 noTrueChildStrategy="returnLastPrediction" x-mathContext="float">
<MiningSchema><MiningField name="x"/></MiningSchema><Node score="0.5"><True/>
<Node score="{i}.25"><SimplePredicate field="x" operator="lessThan" value="0.1"/></Node>
</Node></TreeModel></Segment>"""
            for i in (1, 2)
        )
        + "</Segmentation></MiningModel></PMML>"
    )
    below = float(np.nextafter(np.float32(0.1), np.float32(0)))
    out = loads(doc).predict({"x": [0.1, below, 0.1000000001, 0.09999999]})
    assert out["y"].tolist() == [1.0, 3.5, 1.0, 3.5]


def _voter(low: str, high: str, at: float, weight: float) -> str:
    """A classification stump: ``low`` (3 of 4 records) when x <= at, else ``high``."""

    def leaf(label: str, op: str) -> str:
        other = "b" if label == "a" else "a"
        return (
            f'<Node score="{label}"><SimplePredicate field="x" operator="{op}" value="{at}"/>'
            f'<ScoreDistribution value="{label}" recordCount="{4 if at == 1 else 3}"/>'
            f'<ScoreDistribution value="{other}" recordCount="{0 if at == 1 else 1}"/></Node>'
        )

    return (
        f'<Segment weight="{weight}"><True/><TreeModel functionName="classification">'
        '<MiningSchema><MiningField name="x"/></MiningSchema><Node><True/>'
        f"{leaf(low, 'lessOrEqual')}{leaf(high, 'greaterThan')}</Node></TreeModel></Segment>"
    )


def _vote_doc(method: str) -> str:
    return f"""<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><DataDictionary>
<DataField name="x" optype="continuous" dataType="double"/>
<DataField name="y" optype="categorical" dataType="string"><Value value="a"/><Value value="b"/>
</DataField></DataDictionary><MiningModel functionName="classification">
<MiningSchema><MiningField name="y" usageType="target"/><MiningField name="x"/></MiningSchema>
<Segmentation multipleModelMethod="{method}">
{_voter("a", "b", 0, 1)}{_voter("a", "b", 1, 1)}{_voter("b", "a", -1, 3)}
</Segmentation></MiningModel></PMML>"""


@pytest.mark.parametrize(
    ("method", "labels", "prob_a", "prob_b"),
    [
        # x = -2: votes a, a, b; x = 0.5: b, a, a; x = 2: b, b, a
        ("majorityVote", ["a", "a", "b"], [2 / 3, 2 / 3, 1 / 3], [1 / 3, 1 / 3, 2 / 3]),
        # probabilities of a: (.75 + 1 + .25) / 3, (.25 + 1 + .75) / 3, (.25 + 0 + .75) / 3
        ("average", ["a", "a", "b"], [2 / 3, 2 / 3, 1 / 3], [1 / 3, 1 / 3, 2 / 3]),
        # the third tree weighs 3: a 2 vs b 3, then a 4 vs b 1, then a 3 vs b 2
        ("weightedMajorityVote", ["b", "a", "a"], [2 / 5, 4 / 5, 3 / 5], [3 / 5, 1 / 5, 2 / 5]),
    ],
)
def test_stacked_classification_forest_votes_and_averages(
    method: str, labels: list[str], prob_a: list[float], prob_b: list[float]
) -> None:
    model = loads(_vote_doc(method))
    out = model.predict({"x": [-2.0, 0.5, 2.0]})
    assert model.model._votes is not None  # type: ignore[attr-defined]
    assert out["y"].tolist() == labels
    assert out["probability(a)"].tolist() == prob_a
    assert out["probability(b)"].tolist() == prob_b


# -- random forests: every predicate kind and strategy, stacked against tree by tree ------

FIELDS_DOC = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><DataDictionary>
<DataField name="x" optype="continuous" dataType="{x_type}"/>
<DataField name="z" optype="continuous" dataType="double"/>
<DataField name="k" optype="continuous" dataType="integer"/>
<DataField name="c" optype="categorical" dataType="string"/>
<DataField name="y" optype="{y_optype}" dataType="{y_type}">{values}</DataField>
</DataDictionary>"""
ALL_FIELDS = "".join(f'<MiningField name="{f}"/>' for f in "xzkc")


def _random_predicate(rng: random.Random, depth: int = 0) -> str:
    r = rng.random()
    field = rng.choice("xzkc")
    if r < 0.05:
        return "<True/>"
    if r < 0.07:
        return "<False/>"
    if r < 0.12 and depth < 2:
        op = rng.choice(["and", "or", "xor", "surrogate"])
        parts = "".join(_random_predicate(rng, depth + 1) for _ in range(rng.randint(2, 3)))
        return f'<CompoundPredicate booleanOperator="{op}">{parts}</CompoundPredicate>'
    if r < 0.17:
        op = rng.choice(["isMissing", "isNotMissing"])
        return f'<SimplePredicate field="{field}" operator="{op}"/>'
    if field in "ck" and rng.random() < 0.5:
        pool = ["a", "b", "c", "d", '"e f"'] if field == "c" else [str(v) for v in range(1, 9)]
        values = " ".join(rng.sample(pool, rng.randint(1, 4)))
        kind = "string" if field == "c" else "int"
        op = rng.choice(["isIn", "isNotIn"])
        return (
            f'<SimpleSetPredicate field="{field}" booleanOperator="{op}">'
            f'<Array type="{kind}">{values}</Array></SimpleSetPredicate>'
        )
    if field == "c":
        op, value = rng.choice(["equal", "notEqual"]), rng.choice("abcd")
    else:
        op = rng.choice(
            ["lessThan", "lessOrEqual", "greaterThan", "greaterOrEqual", "equal", "notEqual"]
        )
        value = str(rng.choice([0, 0.5, 1, 2, 3, -1, 0.1, 5]))
    return f'<SimplePredicate field="{field}" operator="{op}" value="{value}"/>'


def _random_node(rng: random.Random, depth: int, classify: bool, ids: list[int]) -> str:
    ids.append(len(ids) + 1)
    node_id = f"n{ids[-1]}"
    score = rng.choice("abc") if classify else str(round(rng.uniform(-5, 5), 3))
    dist = "".join(
        f'<ScoreDistribution value="{c}" recordCount="{rng.randint(0, 5)}"/>' for c in "abc"
    )
    children: list[str] = []
    child_ids: list[str] = []
    if depth < 4 and rng.random() < 0.8:
        for _ in range(rng.choice([1, 2, 2, 3])):
            child_ids.append(f"n{len(ids) + 1}")
            children.append(_random_node(rng, depth + 1, classify, ids))
    default = f' defaultChild="{rng.choice(child_ids)}"' if child_ids and rng.random() < 0.5 else ""
    return (
        f'<Node id="{node_id}" score="{score}"{default}>'
        f"{_random_predicate(rng) if depth else '<True/>'}{dist if classify else ''}"
        f"{''.join(children)}</Node>"
    )


def _random_forest(seed: int) -> tuple[str, bool]:
    rng = random.Random(seed)
    classify = rng.random() < 0.5
    function = "classification" if classify else "regression"
    trees = []
    for _ in range(rng.randint(2, 6)):
        strategy = rng.choice(["none", "lastPrediction", "nullPrediction", "defaultChild"])
        no_true = rng.choice(["returnNullPrediction", "returnLastPrediction"])
        body = _random_node(rng, 0, classify, [])
        trees.append(
            f'<Segment><True/><TreeModel functionName="{function}"'
            f' missingValueStrategy="{strategy}" noTrueChildStrategy="{no_true}">'
            f"<MiningSchema>{ALL_FIELDS}</MiningSchema>{body}</TreeModel></Segment>"
        )
    methods = (
        ["majorityVote", "weightedMajorityVote", "average", "max"]
        if classify
        else ["sum", "average", "weightedAverage", "median", "max"]
    )
    head = FIELDS_DOC.format(
        x_type=rng.choice(["double", "float"]),
        y_optype="categorical" if classify else "continuous",
        y_type="string" if classify else "double",
        values='<Value value="a"/><Value value="b"/><Value value="c"/>' if classify else "",
    )
    return (
        f'{head}<MiningModel functionName="{function}"><MiningSchema>'
        f'<MiningField name="y" usageType="target"/>{ALL_FIELDS}</MiningSchema>'
        f'<Segmentation multipleModelMethod="{rng.choice(methods)}">{"".join(trees)}'
        "</Segmentation></MiningModel></PMML>"
    ), classify


def _cells(values: object) -> list[object]:
    """Cells as Python values, NaN as None: equal results compare equal."""
    cells = np.asarray(values).tolist()
    return [None if isinstance(v, float) and math.isnan(v) else v for v in cells]


@pytest.mark.parametrize("seed", range(30))
def test_random_forests_score_alike_stacked_and_tree_by_tree(seed: int) -> None:
    text, _ = _random_forest(seed)
    g = np.random.default_rng(seed)
    n = 200
    columns = {
        "x": g.choice([-1, 0, 0.1, 0.5, 1, 2, 3, 5, 7, NAN], n).tolist(),
        "z": g.choice([-1, 0, 0.5, 1, 2, NAN], n).tolist(),
        "k": g.choice([0, 1, 2, 3, 4, 5, 8, NAN], n).tolist(),
        "c": g.choice(np.array(["a", "b", "c", "d", "e f", None], dtype=object), n).tolist(),
    }
    stacked = loads(text)
    got = stacked.predict(columns)
    assert stacked.model._stack  # type: ignore[attr-defined]
    alone = loads(text)
    alone.model._stack = False  # type: ignore[attr-defined]
    want = alone.predict(columns)
    assert got.keys() == want.keys()
    for name in want:
        assert _cells(got[name]) == _cells(want[name]), name
    for i in range(0, n, 40):  # one row at a time walks the tables in plain Python
        row = stacked.predict({k: v[i : i + 1] for k, v in columns.items()})
        for name in want:
            assert _cells(row[name]) == _cells(want[name][i : i + 1]), (i, name)
