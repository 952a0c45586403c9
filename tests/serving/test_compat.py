"""Models as people train them, and clients as MLflow and KServe write them (issue 19, 13.15-16).

MLflow's ``ScoringServerClient.invoke(data)`` posts ``dump_input_data(data)``:
``{"dataframe_split": frame.to_dict(orient="split")}`` written by Python's
``json.dumps`` (NaN as ``NaN``, datetimes as ISO strings) with content type
``application/json``. :func:`mlflow_body` writes the same bytes, so these
tests send what that client sends without installing MLflow.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from conveyor.config import Settings
from conveyor.models.sklearn import save

from .conftest import Serve, Trained


def mlflow_body(frame: pd.DataFrame) -> bytes:
    """What MLflow 3's ScoringServerClient.invoke(frame) posts to /invocations."""

    def encode(value: Any) -> Any:
        if isinstance(value, (dt.datetime, dt.date, pd.Timestamp)):
            return value.isoformat()
        raise TypeError(type(value).__name__)

    return json.dumps({"dataframe_split": frame.to_dict(orient="split")}, default=encode).encode()


def _invoke(base: str, frame: pd.DataFrame) -> httpx.Response:
    return httpx.post(
        f"{base}/invocations",
        content=mlflow_body(frame),
        headers={"content-type": "application/json"},
    )


# -- 4: a model fitted on an array takes a table of as many columns -------------------------


def test_array_model_takes_a_table_of_its_width(
    serve: Serve, gbc: Trained, trusting: Settings
) -> None:
    base = serve(gbc.path, trusting)
    x = gbc.x[:3]
    expected = gbc.estimator.predict(x).tolist()
    frame = pd.DataFrame(x)  # columns 0..19, as MLflow users build it
    r = _invoke(base, frame)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": expected}

    named = pd.DataFrame(x, columns=[f"f{i}" for i in range(20)])
    records = named.to_dict(orient="records")
    r = httpx.post(f"{base}/invocations", json={"dataframe_records": records})
    assert r.json() == {"predictions": expected}
    r = httpx.post(f"{base}/predict", json=records)
    assert [row["label"] for row in r.json()] == expected
    csv = named.to_csv(index=False)
    r = httpx.post(f"{base}/invocations", content=csv, headers={"content-type": "text/csv"})
    assert r.json() == {"predictions": expected}

    r = httpx.post(f"{base}/predict", json=[{f"f{i}": 0.0 for i in range(19)}])
    assert r.status_code == 400
    assert "has 19 columns; the model takes one tensor 'x' of 20 values" in r.json()["error"]


# -- 3: extra columns are left out and said so; --strict-inputs refuses them ----------------


def test_extra_columns_are_ignored_and_reported(
    serve: Serve, churn: Trained, settings: Settings
) -> None:
    base = serve(churn.path, settings)
    row = {"customer_id": "c-17", "age": 41, "income": 52_000.0}
    expected = churn.estimator.predict(pd.DataFrame([row])[["age", "income"]]).tolist()
    r = httpx.post(f"{base}/predict", json=[row])
    assert r.status_code == 200
    assert [x["label"] for x in r.json()] == expected
    assert r.headers["x-ignored-fields"] == "customer_id"
    r = _invoke(base, pd.DataFrame([row]))
    assert r.json() == {"predictions": expected}
    assert r.headers["x-ignored-fields"] == "customer_id"
    plain = {"age": 41, "income": 52_000.0}
    assert "x-ignored-fields" not in httpx.post(f"{base}/predict", json=[plain]).headers
    metrics = httpx.get(f"{base}/metrics").text
    assert 'conveyor_ignored_fields_total{model="churn"} 2.0' in metrics

    strict = serve(churn.path, settings, strict_inputs=True)
    r = httpx.post(f"{strict}/predict", json=[row])
    assert r.status_code == 400
    assert "customer_id: unknown field (this service refuses extra fields" in r.json()["error"]


# -- 6: V2 outputs have the datatypes the metadata declares -------------------------------


@pytest.mark.parametrize("kind", ["kmeans", "isolation"])
def test_v2_output_datatypes_match_the_metadata(
    serve: Serve, settings: Settings, tmp_path: Path, kind: str
) -> None:
    x = np.random.default_rng(0).normal(size=(100, 3))
    est = (
        KMeans(n_clusters=3, n_init=2, random_state=0).fit(x)
        if kind == "kmeans"
        else IsolationForest(n_estimators=10, random_state=0).fit(x)
    )
    save(est, tmp_path / f"{kind}.skops")
    trusted = Settings.from_env(
        {
            "CONVEYOR_HOME": str(settings.home),
            "CONVEYOR_TRUSTED_TYPES": (
                "sklearn.tree._tree.Tree,sklearn.tree._classes.ExtraTreeRegressor"
            ),
        }
    )
    base = serve(tmp_path / f"{kind}.skops", trusted)
    meta = httpx.get(f"{base}/v2/models/{kind}").json()
    declared = {o["name"]: o["datatype"] for o in meta["outputs"]}
    r = httpx.post(
        f"{base}/v2/models/{kind}/infer",
        json={
            "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": x[:2].tolist()}]
        },
    )
    assert r.status_code == 200, r.text
    answered = {o["name"]: o["datatype"] for o in r.json()["outputs"]}
    assert answered == declared
    assert declared == ({"cluster": "INT64"} if kind == "kmeans" else {"prediction": "INT64"})
    assert r.json()["outputs"][0]["data"] == est.predict(x[:2]).tolist()


# -- 8 (issue 13.15): missing values where the model takes them ------------------------------


@pytest.fixture(scope="module")
def imputed(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"age": rng.normal(40, 10, 200), "spend": rng.normal(100, 30, 200)})
    frame.loc[::7, "spend"] = np.nan
    y = (frame["age"] > 40).astype(int)
    est = make_pipeline(SimpleImputer(), LogisticRegression()).fit(frame, y)
    path = tmp_path_factory.mktemp("models") / "imputed.skops"
    save(est, path, frame.head(10))  # row 0 has spend NaN
    return Trained(path, est, frame)


def test_null_and_nan_reach_a_model_that_imputes(
    serve: Serve, imputed: Trained, settings: Settings
) -> None:
    base = serve(imputed.path, settings, trusted=True)  # SimpleImputer holds a numpy.dtype
    expected = imputed.estimator.predict(
        pd.DataFrame({"age": [30.0, 55.0], "spend": [np.nan, 1.0]})
    )
    r = httpx.post(
        f"{base}/predict", json=[{"age": 30.0, "spend": None}, {"age": 55.0, "spend": 1.0}]
    )
    assert r.status_code == 200, r.text
    assert [row["label"] for row in r.json()] == expected.tolist()
    split = {"dataframe_split": {"columns": ["age", "spend"], "data": [[30.0, None], [55.0, 1.0]]}}
    r = httpx.post(f"{base}/invocations", json=split)
    assert r.json() == {"predictions": expected.tolist()}
    # Python's json.dumps writes NaN; MLflow's client sends it so.
    r = _invoke(base, pd.DataFrame({"age": [30.0, 55.0], "spend": [np.nan, 1.0]}))
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": expected.tolist()}
    # age never was missing in the example: a null there is refused, and the answer says why.
    r = httpx.post(f"{base}/predict", json=[{"age": None, "spend": 1.0}])
    assert r.status_code == 400
    assert "does not allow missing values" in r.json()["error"]


# -- 9 (issue 13.16): messages ---------------------------------------------------------------


def test_messages_say_what_is_wrong(serve: Serve, churn: Trained, settings: Settings) -> None:
    base = serve(churn.path, settings)
    r = httpx.post(f"{base}/predict", json=[])
    assert r.status_code == 400
    assert "is an empty list" in r.json()["error"]
    body = b'[{"age": 40, "income": NaN}]'
    r = httpx.post(f"{base}/predict", content=body)
    assert r.status_code == 400
    assert "NaN or infinity in row(s) [0] where a value is required" in r.json()["error"]
    r = httpx.post(f"{base}/predict", content=b'[{"age": 40, "income": Infinity}')
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]


def test_a_413_counts_under_its_route_protocol(
    serve: Serve, churn: Trained, settings: Settings
) -> None:
    base = serve(churn.path, settings, max_body=100)
    r = httpx.post(f"{base}/v2/models/churn/infer", content=b"x" * 200)
    assert r.status_code == 413
    r = httpx.post(f"{base}/invocations", content=b"x" * 200)
    assert r.status_code == 413
    metrics = httpx.get(f"{base}/metrics").text
    assert 'protocol="v2",status="413"' in metrics
    assert 'protocol="mlflow",status="413"' in metrics
    assert 'protocol="other",status="413"' not in metrics


# -- 7: schemas and behaviour agree ----------------------------------------------------------


def test_schema_and_behaviour_agree(serve: Serve, churn: Trained, settings: Settings) -> None:
    base = serve(churn.path, settings)
    doc = httpx.get(f"{base}/openapi.json").json()
    paths = doc["paths"]
    assert {"/v1/models", "/v1/models/{model_name}", "/v1/models/{model_name}:explain"} <= set(
        paths
    )
    # Empty batches: refused, and the schema says so.
    v1_request = paths["/v1/models/{model_name}:predict"]["post"]["requestBody"]
    assert (
        v1_request["content"]["application/json"]["schema"]["properties"]["instances"]["minItems"]
        == 1
    )
    r = httpx.post(f"{base}/v1/models/churn:predict", json={"instances": []})
    assert r.status_code == 400
    csv_schema = paths["/invocations"]["post"]["requestBody"]["content"]["text/csv"]["schema"]
    assert "pattern" in csv_schema
    r = httpx.post(f"{base}/invocations", content=b"", headers={"content-type": "text/csv"})
    assert r.status_code == 400
    infer = paths["/v2/models/{model_name}/infer"]["post"]["requestBody"]
    tensor = infer["content"]["application/json"]["schema"]["properties"]["inputs"]["items"]
    assert tensor["properties"]["shape"]["minItems"] == 1
    r = httpx.post(
        f"{base}/v2/models/churn/infer",
        json={"inputs": [{"name": "age", "shape": [], "datatype": "INT64", "data": []}]},
    )
    assert r.status_code == 400
    # parameters that are not an object: invalid by the schema, refused by the service.
    tensors = [
        {"name": "age", "shape": [1], "datatype": "INT64", "data": [40]},
        {"name": "income", "shape": [1], "datatype": "FP64", "data": [5e4]},
    ]
    r = httpx.post(
        f"{base}/v2/models/churn/infer", json={"inputs": tensors, "parameters": [None, None]}
    )
    assert r.status_code == 400
    assert r.json()["details"][0]["field"] == "parameters"
    # KServe V1: the list, a model's status, and :explain (not offered).
    assert httpx.get(f"{base}/v1/models").json() == {"models": ["churn"]}
    assert httpx.get(f"{base}/v1/models/churn").json() == {"name": "churn", "ready": True}
    r = httpx.post(f"{base}/v1/models/churn:explain", json={"instances": [[40, 5e4]]})
    assert r.status_code == 501
    assert "has no explainer" in r.json()["error"]
    assert httpx.get(f"{base}/v1/models/churn:explain").status_code == 405
    assert httpx.post(f"{base}/v1/models/other:explain", json={}).status_code == 404


# -- 1, 2: category and datetime columns ------------------------------------------------------


def _dates_frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    start = np.datetime64("2024-01-01T00:00:00", "s")
    return pd.DataFrame(
        {
            "when": pd.Series(start + rng.integers(0, 86_400 * 365, n).astype("timedelta64[s]")),
            "member": rng.integers(0, 2, n).astype(bool),
            "amount": rng.normal(size=n),
        }
    )


def _day_of_year(frame: pd.DataFrame) -> Any:
    # A model that really uses the date: fails on strings, as a date encoder does.
    out = frame.copy()
    out["when"] = out["when"].dt.day_of_year.astype(float)
    out["member"] = out["member"].astype(float)
    return out


def test_datetime_and_bool_columns(serve: Serve, settings: Settings, tmp_path: Path) -> None:
    frame = _dates_frame(200)
    y = frame["when"].dt.day_of_year * 0.5 + frame["amount"] + frame["member"]
    est = make_pipeline(
        ColumnTransformer(
            [("all", FunctionTransformer(_day_of_year), ["when", "member", "amount"])]
        ),
        LinearRegression(),
    ).fit(frame, y)
    path = tmp_path / "dates.skops"
    sig = save(est, path, frame.head())
    assert [(f.name, f.dtype) for f in sig.inputs] == [
        ("when", "datetime64[s]"),
        ("member", "bool"),
        ("amount", "float64"),
    ]
    trusted = Settings.from_env(
        {"CONVEYOR_HOME": str(settings.home), "CONVEYOR_TRUSTED_TYPES": f"{__name__}._day_of_year"}
    )
    base = serve(path, trusted)
    rows = [
        {"when": "2024-03-01", "member": True, "amount": 0.5},
        {"when": "2024-03-01T12:30:00", "member": False, "amount": 0.5},
        {"when": "2024-03-01T23:30:00-02:00", "member": False, "amount": 0.5},  # Mar 2 in UTC
    ]
    r = httpx.post(f"{base}/predict", json=rows)
    assert r.status_code == 200, r.text
    check = pd.DataFrame(
        {
            "when": pd.to_datetime(["2024-03-01T00:00", "2024-03-01T12:30", "2024-03-02T01:30"]),
            "member": [True, False, False],
            "amount": [0.5] * 3,
        }
    )
    assert [row["prediction"] for row in r.json()] == pytest.approx(est.predict(check).tolist())
    r = _invoke(base, check)
    assert r.json()["predictions"] == pytest.approx(est.predict(check).tolist())
    r = httpx.post(
        f"{base}/predict", json=[{"when": "1st of March", "member": True, "amount": 0.5}]
    )
    assert r.status_code == 400
    assert r.json()["details"][0]["field"] == "when"
    assert "is not an ISO-8601 date or date-time" in r.json()["error"]
    r = httpx.post(f"{base}/predict", json=[{"when": "2024-03-01", "member": "yes", "amount": 0.5}])
    assert r.status_code == 400
    assert r.json()["details"][0]["field"] == "member"


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_category_columns(serve: Serve, settings: Settings, tmp_path: Path, library: str) -> None:
    lib = pytest.importorskip(library)
    rng = np.random.default_rng(2)
    colours = ["red", "green", "blue"]
    frame = pd.DataFrame(
        {
            "colour": pd.Categorical(rng.choice(colours, 300), categories=colours),
            "size": rng.normal(size=300),
        }
    )
    y = ((frame["colour"] == "red") | (frame["size"] > 1)).astype(int)
    if library == "xgboost":
        est = lib.XGBClassifier(n_estimators=10, enable_categorical=True, tree_method="hist")
    else:
        est = lib.LGBMClassifier(n_estimators=10, verbose=-1)
    est.fit(frame, y)
    path = tmp_path / f"{library}.skops"
    sig = save(est, path, frame.head())
    assert sig.inputs[0].dtype == "category"
    assert sig.inputs[0].values == tuple(colours)
    base = serve(path, settings, trusted=True)
    rows = [{"colour": "red", "size": 0.0}, {"colour": "blue", "size": 2.0}]
    expected = est.predict(
        pd.DataFrame(
            {"colour": pd.Categorical(["red", "blue"], categories=colours), "size": [0.0, 2.0]}
        )
    )
    r = httpx.post(f"{base}/predict", json=rows)
    assert r.status_code == 200, r.text
    assert [row["label"] for row in r.json()] == expected.tolist()
    r = httpx.post(f"{base}/predict", json=[{"colour": "purple", "size": 0.0}])
    assert r.status_code == 400
    assert "'purple' is not one of the categories the model was trained with" in r.json()["error"]
