"""Date and time data types and the date built-in functions, against values worked out by hand.

The expected figures follow the PMML 4.4 DataDictionary ("dateDaysSince[1960]"
is the number of days since 1960-01-01, ...) and Built-in functions pages
(dateDaysSinceYear of 2003-04-01 since 1960 is 15796, as in the spec's
example): 1960-01-01 to 2003-01-01 is 43 years with 11 leap days, 15706 days,
and April 1st is 90 days into 2003.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from conveyor.errors import ModelError
from conveyor.models.pmml import loads

FIELDS = {
    "d": "date",
    "t": "time",
    "ts": "dateTime",
    "d60": "dateDaysSince[1960]",
    "d0": "dateDaysSince[0]",
    "s70": "dateTimeSecondsSince[1970]",
    "secs": "timeSeconds",
}


def _output(name: str, body: str, data_type: str = "double") -> str:
    optype = "continuous" if data_type == "double" else "categorical"
    return (
        f'<OutputField name="{name}" feature="transformedValue" dataType="{data_type}"'
        f' optype="{optype}">{body}</OutputField>'
    )


def _apply(function: str, *args: str) -> str:
    return f'<Apply function="{function}">{"".join(args)}</Apply>'


def _ref(field: str) -> str:
    return f'<FieldRef field="{field}"/>'


def _const(value: str, data_type: str = "integer") -> str:
    return f'<Constant dataType="{data_type}">{value}</Constant>'


OUTPUTS = [
    _output("days60", _apply("dateDaysSinceYear", _ref("d"), _const("1960"))),
    _output("secs60", _apply("dateSecondsSinceYear", _ref("ts"), _const("1960"))),
    _output("midnight", _apply("dateSecondsSinceMidnight", _ref("t"))),
    _output("midnight_ts", _apply("dateSecondsSinceMidnight", _ref("ts"))),
    _output("fmt", _apply("formatDatetime", _ref("d"), _const("%m/%d/%y", "string")), "string"),
    _output(
        "fmt_ts",
        _apply("formatDatetime", _ref("ts"), _const("%Y-%m-%d %H:%M", "string")),
        "string",
    ),
    _output("d60_value", _ref("d60")),
    _output("d0_value", _ref("d0")),
    _output("s70_value", _ref("s70")),
    _output("secs_value", _ref("secs")),
    _output("d_again", _ref("d"), "date"),
    _output("t_again", _ref("t"), "time"),
    _output("ts_again", _ref("ts"), "dateTime"),
]

DOC = f"""<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><DataDictionary>
{"".join(f'<DataField name="{n}" optype="continuous" dataType="{t}"/>' for n, t in FIELDS.items())}
<DataField name="y" optype="continuous" dataType="double"/></DataDictionary>
<RegressionModel functionName="regression"><MiningSchema>
<MiningField name="y" usageType="target"/>
{"".join(f'<MiningField name="{n}"/>' for n in FIELDS)}</MiningSchema>
<Output>{"".join(OUTPUTS)}</Output>
<RegressionTable intercept="0"><NumericPredictor name="d60" coefficient="1"/></RegressionTable>
</RegressionModel></PMML>"""

ISO_ROW = {
    "d": "2003-04-01",
    "t": "19:30:00",
    "ts": "2003-04-01T12:05:00",
    "d60": "2003-04-01",
    "d0": "0001-01-01",  # year 0 is a leap year in ISO 8601's calendar: 366 days
    "s70": "1970-01-01T00:01:00",
    "secs": "01:00:00",
}


def test_iso_strings_become_pmml_counts_and_functions_follow_the_spec() -> None:
    out = loads(DOC).predict([ISO_ROW])
    assert out["y"].tolist() == [15796.0]
    assert out["days60"].tolist() == [15796.0]
    assert out["secs60"].tolist() == [15796 * 86400 + 12 * 3600 + 5 * 60]  # 1364817900
    assert out["midnight"].tolist() == [19 * 3600 + 30 * 60]
    assert out["midnight_ts"].tolist() == [12 * 3600 + 5 * 60]
    assert out["fmt"].tolist() == ["04/01/03"]
    assert out["fmt_ts"].tolist() == ["2003-04-01 12:05"]
    assert out["d60_value"].tolist() == [15796.0]
    assert out["d0_value"].tolist() == [366.0]
    assert out["s70_value"].tolist() == [60.0]
    assert out["secs_value"].tolist() == [3600.0]
    assert out["d_again"].tolist() == ["2003-04-01"]
    assert out["t_again"].tolist() == ["19:30:00"]
    assert out["ts_again"].tolist() == ["2003-04-01T12:05:00"]


def test_python_date_objects_numbers_and_missing_values() -> None:
    rows = [
        {
            "d": dt.date(1960, 1, 1),
            "t": dt.time(0, 0, 1),
            "ts": dt.datetime(1959, 12, 31, 23, 59, 59),
            "d60": 12,  # a number is already the count of days
            "d0": dt.date(1, 3, 1),  # 366 + 31 + 28
            "s70": dt.datetime(1969, 12, 31, 23, 0, 0),
            "secs": 59,
        },
        dict.fromkeys(FIELDS),
    ]
    out = loads(DOC).predict(rows)
    assert out["days60"][0] == 0.0
    assert out["secs60"][0] == -1.0
    assert out["midnight"][0] == 1.0
    assert out["midnight_ts"][0] == 86399.0
    assert out["d60_value"][0] == 12.0
    assert out["d0_value"][0] == 366 + 31 + 28
    assert out["s70_value"][0] == -3600.0
    assert out["secs_value"][0] == 59.0
    assert out["fmt_ts"][0] == "1959-12-31 23:59"
    for name in ("days60", "secs60", "midnight", "d60_value", "s70_value", "secs_value"):
        assert math.isnan(out[name][1]), name
    assert out["fmt"][1] is None
    assert out["d_again"][1] is None


def test_a_dataframe_of_timestamps_is_read_as_dates() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "d": pd.to_datetime(["2003-04-01", None, "1960-01-02"]),
            "ts": pd.to_datetime(["2003-04-01 12:05:00", "1970-01-01 00:00:00", None]),
            "d60": pd.to_datetime(["2003-04-01 23:59:59", None, "1959-12-31 00:00:00"]),
        }
    )
    out = loads(DOC).predict(frame)
    assert out["days60"][0] == 15796.0
    assert math.isnan(out["days60"][1])
    assert out["days60"][2] == 1.0
    assert out["secs60"][:2].tolist() == [1364817900.0, 3653 * 86400.0]
    assert out["d60_value"][0] == 15796.0  # the time of day does not count
    assert out["d60_value"][2] == -1.0
    # a big frame hands its columns over as datetime64 arrays, read without a Python loop
    big = loads(DOC).predict(pd.concat([frame] * 40, ignore_index=True))
    for name in ("days60", "secs60", "d60_value"):
        np.testing.assert_array_equal(big[name], np.tile(out[name], 40))


def test_tree_compares_dates_and_times_with_document_constants() -> None:
    doc = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><DataDictionary>
<DataField name="d" optype="continuous" dataType="date"/>
<DataField name="t" optype="continuous" dataType="time"/>
<DataField name="y" optype="continuous" dataType="double"/></DataDictionary>
<TreeModel functionName="regression"><MiningSchema><MiningField name="y" usageType="target"/>
<MiningField name="d"/><MiningField name="t"/></MiningSchema>
<Node score="0"><True/>
 <Node score="1"><SimplePredicate field="d" operator="lessThan" value="2000-01-01"/>
  <Node score="10"><SimplePredicate field="t" operator="lessOrEqual" value="12:00:00"/></Node>
  <Node score="20"><True/></Node></Node>
 <Node score="2"><SimplePredicate field="d" operator="equal" value="2000-01-01"/></Node>
 <Node score="3"><True/></Node>
</Node></TreeModel></PMML>"""
    out = loads(doc).predict(
        {
            "d": ["1999-12-31", "1999-12-31", "2000-01-01", "2000-01-02"],
            "t": ["12:00:00", "12:00:01", "00:00:00", "23:59:59"],
        }
    )
    assert out["y"].tolist() == [10.0, 20.0, 2.0, 3.0]


def test_a_value_that_is_not_a_date_is_rejected_with_its_field_named() -> None:
    with pytest.raises(ModelError, match="'d'"):
        loads(DOC).predict([{**ISO_ROW, "d": "first of April"}])


def test_date_constants_and_derived_fields_of_a_since_type() -> None:
    doc = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><DataDictionary>
<DataField name="d" optype="continuous" dataType="dateDaysSince[1970]"/>
<DataField name="y" optype="continuous" dataType="double"/></DataDictionary>
<TransformationDictionary>
<DerivedField name="age" optype="continuous" dataType="double"><Apply function="-">
 <Apply function="dateDaysSinceYear"><Constant dataType="date">2000-03-01</Constant>
  <Constant dataType="integer">1970</Constant></Apply>
 <FieldRef field="d"/></Apply></DerivedField>
</TransformationDictionary>
<RegressionModel functionName="regression"><MiningSchema>
<MiningField name="y" usageType="target"/><MiningField name="d"/></MiningSchema>
<RegressionTable intercept="0"><NumericPredictor name="age" coefficient="1"/></RegressionTable>
</RegressionModel></PMML>"""
    # 1970-01-01 .. 2000-01-01: 30 years, 7 leap days (72 76 80 84 88 92 96) = 10957 days;
    # 2000-03-01 is 31 + 29 days later: 11017
    out = loads(doc).predict({"d": ["1970-01-01", "2000-02-29", None]})
    assert out["y"][:2].tolist() == [11017.0, 1.0]
    assert np.isnan(out["y"][2])


def test_missing_dates_take_the_replacement_and_invalid_ones_are_treated_as_missing() -> None:
    doc = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><DataDictionary>
<DataField name="d" optype="continuous" dataType="date"/>
<DataField name="y" optype="continuous" dataType="double"/></DataDictionary>
<RegressionModel functionName="regression"><MiningSchema>
<MiningField name="y" usageType="target"/>
<MiningField name="d" missingValueReplacement="2000-01-01" invalidValueTreatment="asMissing"/>
</MiningSchema>
<LocalTransformations><DerivedField name="days" optype="continuous" dataType="integer">
 <Apply function="dateDaysSinceYear"><FieldRef field="d"/><Constant>1960</Constant></Apply>
</DerivedField></LocalTransformations>
<RegressionTable intercept="0"><NumericPredictor name="days" coefficient="1"/></RegressionTable>
</RegressionModel></PMML>"""
    # 1960-01-01 .. 2000-01-01: 40 years with 10 leap days (1960, 1964, ..., 1996) = 14610
    out = loads(doc).predict({"d": ["1960-01-31", None, "2000-13-45"]})
    assert out["y"].tolist() == [30.0, 14610.0, 14610.0]


def test_derived_fields_re_express_dates_in_their_own_type() -> None:
    doc = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><DataDictionary>
<DataField name="d" optype="continuous" dataType="date"/>
<DataField name="ts" optype="continuous" dataType="dateTime"/>
<DataField name="n60" optype="continuous" dataType="dateDaysSince[1960]"/>
<DataField name="y" optype="continuous" dataType="double"/></DataDictionary>
<TransformationDictionary>
<DerivedField name="d70" optype="continuous" dataType="dateDaysSince[1970]">
 <FieldRef field="d"/></DerivedField>
<DerivedField name="ts80" optype="continuous" dataType="dateTimeSecondsSince[1980]">
 <FieldRef field="ts"/></DerivedField>
<DerivedField name="n70" optype="continuous" dataType="dateDaysSince[1970]">
 <FieldRef field="n60"/></DerivedField>
<DerivedField name="clock" optype="continuous" dataType="timeSeconds">
 <FieldRef field="ts"/></DerivedField>
</TransformationDictionary>
<RegressionModel functionName="regression"><MiningSchema>
<MiningField name="y" usageType="target"/><MiningField name="d"/><MiningField name="ts"/>
<MiningField name="n60"/></MiningSchema>
<Output>
 <OutputField name="d70" feature="transformedValue" dataType="double"><FieldRef field="d70"/>
 </OutputField>
 <OutputField name="ts80" feature="transformedValue" dataType="double"><FieldRef field="ts80"/>
 </OutputField>
 <OutputField name="n70" feature="transformedValue" dataType="double"><FieldRef field="n70"/>
 </OutputField>
 <OutputField name="clock" feature="transformedValue" dataType="double"><FieldRef field="clock"/>
 </OutputField>
</Output>
<RegressionTable intercept="0"/></RegressionModel></PMML>"""
    out = loads(doc).predict({"d": ["1970-01-11"], "ts": ["1980-01-02T00:00:05"], "n60": [3654]})
    assert out["d70"].tolist() == [10.0]
    assert out["ts80"].tolist() == [86405.0]
    assert out["n70"].tolist() == [1.0]  # 1960-01-01 + 3654 days is 1970-01-02
    assert out["clock"].tolist() == [5.0]


def test_untyped_date_constants_compare_as_dates() -> None:
    doc = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><DataDictionary>
<DataField name="d" optype="continuous" dataType="date"/>
<DataField name="t" optype="continuous" dataType="time"/>
<DataField name="y" optype="continuous" dataType="double"/></DataDictionary>
<RegressionModel functionName="regression"><MiningSchema>
<MiningField name="y" usageType="target"/><MiningField name="d"/><MiningField name="t"/>
</MiningSchema>
<LocalTransformations>
<DerivedField name="late" optype="categorical" dataType="boolean">
 <Apply function="greaterThan"><FieldRef field="d"/><Constant>2000-01-01</Constant></Apply>
</DerivedField>
<DerivedField name="noon" optype="categorical" dataType="boolean">
 <Apply function="lessOrEqual"><FieldRef field="t"/><Constant>12:00:00</Constant></Apply>
</DerivedField></LocalTransformations>
<RegressionTable intercept="0"><NumericPredictor name="late" coefficient="10"/>
<NumericPredictor name="noon" coefficient="1"/></RegressionTable>
</RegressionModel></PMML>"""
    out = loads(doc).predict(
        {"d": ["1999-12-31", "2000-01-02", "2000-01-01"], "t": ["12:00:00", "12:00:01", "01:00"]}
    )
    assert out["y"].tolist() == [1.0, 10.0, 1.0]
