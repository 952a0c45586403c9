"""Every protocol through real HTTP, with predictions checked against the estimator itself."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from conveyor.config import Settings

from .conftest import Serve, Trained


def test_oip_v2_infer_flat_and_nested_match_the_estimator(
    serve: Serve, gbc: Trained, trusting: Settings
) -> None:
    base = serve(gbc.path, trusting)
    rows = gbc.x[:5]
    expected_label = gbc.estimator.predict(rows)
    expected_proba = gbc.estimator.predict_proba(rows)
    for data in (rows.ravel().tolist(), rows.tolist()):
        body = {
            "id": "req-1",
            "inputs": [{"name": "x", "shape": [5, 20], "datatype": "FP64", "data": data}],
        }
        r = httpx.post(f"{base}/v2/models/gbc/infer", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["model_name"] == "gbc"
        assert out["id"] == "req-1"
        by_name = {o["name"]: o for o in out["outputs"]}
        assert by_name["label"]["datatype"] == "INT64"
        assert by_name["label"]["shape"] == [5]
        assert by_name["label"]["data"] == expected_label.tolist()
        assert by_name["probabilities"]["shape"] == [5, 2]
        np.testing.assert_allclose(
            np.array(by_name["probabilities"]["data"]).reshape(5, 2), expected_proba
        )


def test_oip_v2_requested_outputs_versions_and_metadata(
    serve: Serve, gbc: Trained, trusting: Settings
) -> None:
    base = serve(gbc.path, trusting)
    body = {
        "inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP32", "data": gbc.x[0].tolist()}],
        "outputs": [{"name": "probabilities"}],
    }
    r = httpx.post(f"{base}/v2/models/gbc/versions/1/infer", json=body)
    assert r.status_code == 200, r.text
    assert [o["name"] for o in r.json()["outputs"]] == ["probabilities"]

    meta = httpx.get(f"{base}/v2/models/gbc").json()
    assert meta["inputs"] == [{"name": "x", "datatype": "FP64", "shape": [-1, 20]}]
    assert {o["name"] for o in meta["outputs"]} == {"label", "probabilities"}
    assert meta["parameters"]["digest"].startswith("blake3:")
    assert httpx.get(f"{base}/v2/models/gbc/ready").json()["ready"] is True
    assert httpx.get(f"{base}/v2/health/live").status_code == 200
    assert httpx.get(f"{base}/v2").json()["name"] == "conveyor"


def test_oip_v2_integer_tensor_feeds_named_columns(
    serve: Serve, churn: Trained, settings: Settings
) -> None:
    base = serve(churn.path, settings)
    frame = churn.x.iloc[:3]
    body = {
        "inputs": [
            {"name": "age", "shape": [3], "datatype": "INT64", "data": frame["age"].tolist()},
            {
                "name": "income",
                "shape": [3, 1],
                "datatype": "FP64",
                "data": frame["income"].tolist(),
            },
        ]
    }
    r = httpx.post(f"{base}/v2/models/churn/infer", json=body)
    assert r.status_code == 200, r.text
    label = next(o for o in r.json()["outputs"] if o["name"] == "label")
    assert label["datatype"] == "BYTES"
    assert label["data"] == churn.estimator.predict(frame).tolist()


def test_predict_records_give_probabilities_by_class_name(
    serve: Serve, churn: Trained, settings: Settings
) -> None:
    base = serve(churn.path, settings)
    frame = churn.x.iloc[:4]
    records = [
        {"age": int(a), "income": float(i)}
        for a, i in zip(frame["age"], frame["income"], strict=True)
    ]
    r = httpx.post(f"{base}/predict", content=httpx.Request("POST", "/", json=records).content)
    assert r.status_code == 200, r.text
    out = r.json()
    proba = churn.estimator.predict_proba(frame)
    classes = churn.estimator.classes_.tolist()
    assert [row["label"] for row in out] == churn.estimator.predict(frame).tolist()
    for row, p in zip(out, proba, strict=True):
        assert set(row["probabilities"]) == set(classes)
        assert row["probabilities"][classes[0]] == pytest.approx(p[0])
    # One object is one record.
    single = httpx.post(f"{base}/predict", json=records[0]).json()
    assert single[0]["label"] == out[0]["label"]


def test_kserve_v1_predict(serve: Serve, churn: Trained, settings: Settings) -> None:
    base = serve(churn.path, settings)
    frame = churn.x.iloc[:3]
    expected = churn.estimator.predict(frame).tolist()
    as_lists = {"instances": frame.to_numpy().tolist()}
    as_objects = {"instances": frame.to_dict(orient="records")}
    for body in (as_lists, as_objects):
        # to_numpy() turns the int column to float; the server accepts integral floats.
        r = httpx.post(f"{base}/v1/models/churn:predict", json=body)
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": expected}
    assert httpx.get(f"{base}/v1/models/churn").json() == {"name": "churn", "ready": True}


def test_mlflow_invocations_every_format(serve: Serve, churn: Trained, settings: Settings) -> None:
    base = serve(churn.path, settings)
    frame = churn.x.iloc[:3]
    expected = {"predictions": churn.estimator.predict(frame).tolist()}
    split = frame.to_dict(orient="split")
    bodies = [
        {"dataframe_split": {"columns": split["columns"], "data": split["data"]}},
        {"dataframe_records": frame.to_dict(orient="records")},
        {"instances": frame.to_dict(orient="records")},
        {"inputs": {"age": frame["age"].tolist(), "income": frame["income"].tolist()}},
        {"inputs": frame.to_numpy().tolist(), "params": {}},
    ]
    for body in bodies:
        r = httpx.post(f"{base}/invocations", json=body)
        assert r.status_code == 200, (body, r.text)
        assert r.json() == expected
    csv = frame.to_csv(index=False)
    r = httpx.post(f"{base}/invocations", content=csv, headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json() == expected
    assert httpx.get(f"{base}/ping").status_code == 200
    assert httpx.get(f"{base}/health").status_code == 200
    assert httpx.get(f"{base}/version").text


def test_lineage_headers_on_every_response(serve: Serve, gbc: Trained, trusting: Settings) -> None:
    base = serve(gbc.path, trusting)
    ok = httpx.get(f"{base}/v2/models/gbc", headers={"x-request-id": "trace-123"})
    bad = httpx.post(f"{base}/predict", content=b"{")
    for r in (ok, bad):
        assert r.headers["x-model-digest"].startswith("blake3:")
        assert r.headers["x-model-name"] == "gbc"
    assert ok.headers["x-request-id"] == "trace-123"
    assert len(bad.headers["x-request-id"]) == 32


def test_openapi_docs_and_metrics(serve: Serve, gbc: Trained, trusting: Settings) -> None:
    base = serve(gbc.path, trusting)
    doc = httpx.get(f"{base}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/v2/models/{model_name}/infer" in doc["paths"]
    assert "/invocations" in doc["paths"]
    page = httpx.get(f"{base}/docs")
    assert page.headers["content-type"].startswith("text/html")
    assert "/predict" in page.text
    httpx.post(f"{base}/predict", json=[{"x": gbc.x[0].tolist()}])
    httpx.post(f"{base}/predict", json=[{"x": [1.0]}])
    metrics = httpx.get(f"{base}/metrics").text
    assert 'conveyor_requests_total{model="gbc",protocol="records",status="200"} 1.0' in metrics
    assert 'conveyor_errors_total{kind="invalid_input",model="gbc"} 1.0' in metrics
    assert "conveyor_batch_rows_bucket" in metrics
    assert "conveyor_request_duration_seconds_bucket" in metrics
    assert "conveyor_requests_in_flight" in metrics
