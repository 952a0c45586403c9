"""String columns give the same predictions whether pandas' hash tables or Python loops read them.

Long string columns are encoded with pandas when the caller has imported it
(``_values._HASHED`` rows and more); short ones, or any without pandas, go
through plain Python. Both must treat missing and invalid values alike.
"""

from __future__ import annotations

import pytest

from conveyor.models.pmml import _values, loads

DOC = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><DataDictionary>
<DataField name="c" optype="categorical" dataType="string">
 <Value value="a"/><Value value="b"/><Value value="c"/></DataField>
<DataField name="y" optype="categorical" dataType="string">
 <Value value="yes"/><Value value="no"/></DataField></DataDictionary>
<TreeModel functionName="classification" noTrueChildStrategy="returnLastPrediction">
<MiningSchema><MiningField name="y" usageType="target"/>
<MiningField name="c" invalidValueTreatment="asMissing"/></MiningSchema>
<Node score="no"><True/>
 <Node score="yes"><SimplePredicate field="c" operator="equal" value="a"/></Node>
 <Node score="no"><SimpleSetPredicate field="c" booleanOperator="isIn">
  <Array type="string">b</Array></SimpleSetPredicate></Node>
 <Node score="yes"><SimplePredicate field="c" operator="isMissing"/></Node>
</Node></TreeModel></PMML>"""

CELLS = ["a", "b", "c", None, "zzz"]  # "zzz" is invalid: treated as missing
EXPECTED = ["yes", "no", "no", "yes", "yes"]


@pytest.mark.parametrize("hashed", [True, False])
def test_long_string_columns_score_alike_with_and_without_pandas(
    hashed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pandas")
    monkeypatch.setattr(_values, "_HASHED", 1 if hashed else 10**9)
    out = loads(DOC).predict({"c": CELLS * 100})
    assert out["y"].tolist() == EXPECTED * 100
