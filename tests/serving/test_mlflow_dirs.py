"""MLflow model directories (written as MLflow lays them out) served without MLflow installed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest

from conveyor.config import Settings
from conveyor.errors import ModelError, UntrustedModelError
from conveyor.serving import resolve_model_uri

from .conftest import TREE, Serve, Trained

RUN_ID = "0123456789abcdef0123456789abcdef"


def _mlmodel(directory: Path, flavors: str, inputs: list[dict[str, object]]) -> Path:
    directory.mkdir()
    (directory / "MLmodel").write_text(
        f"""artifact_path: model
flavors:
{flavors}
mlflow_version: 2.14.1
model_uuid: 5d3f
run_id: {RUN_ID}
signature:
  inputs: '{json.dumps(inputs)}'
  outputs: '[{{"type": "string", "required": true}}]'
  params: null
utc_time_created: '2024-06-01 10:00:00.000000'
"""
    )
    return directory


def _sklearn_dir(tmp_path: Path, churn: Trained) -> Path:
    directory = _mlmodel(
        tmp_path / "mlflow-model",
        """  python_function:
    env: {conda: conda.yaml, virtualenv: python_env.yaml}
    loader_module: mlflow.sklearn
    model_path: model.pkl
    predict_fn: predict
    python_version: 3.11.7
  sklearn:
    code: null
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.5.0""",
        [
            {"type": "long", "name": "age", "required": True},
            {"type": "double", "name": "income", "required": True},
        ],
    )
    joblib.dump(churn.estimator, directory / "model.pkl")
    return directory


def test_sklearn_flavour_needs_trust_then_serves_invocations(
    tmp_path: Path, churn: Trained, settings: Settings, serve: Serve
) -> None:
    directory = _sklearn_dir(tmp_path, churn)
    with pytest.raises(UntrustedModelError, match="--trust"):
        resolve_model_uri(str(directory), settings)
    resolved = resolve_model_uri(str(directory), settings, trusted=True)
    assert resolved.run_id == RUN_ID
    assert [(f.name, f.dtype) for f in resolved.model.signature.inputs] == [
        ("age", "int64"),
        ("income", "float64"),
    ]
    base = serve(resolved)
    frame = churn.x.iloc[:4]
    split = frame.to_dict(orient="split")
    r = httpx.post(
        f"{base}/invocations",
        json={"dataframe_split": {"columns": split["columns"], "data": split["data"]}},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": churn.estimator.predict(frame).tolist()}
    assert r.headers["x-model-run-id"] == RUN_ID
    assert r.headers["x-model-name"] == "mlflow-model"


def test_skops_flavour_ignores_the_trusted_types_the_file_lists(
    tmp_path: Path, gbc: Trained, settings: Settings, trusting: Settings
) -> None:
    """MLflow 3 writes skops_trusted_types into MLmodel; only the operator decides what to trust."""
    import skops.io as sio

    directory = _mlmodel(
        tmp_path / "skops-model",
        """  sklearn:
    code: null
    pickled_model: model.skops
    serialization_format: skops
    sklearn_version: 1.9.1
    skops_trusted_types:
    - sklearn.tree._tree.Tree""",
        [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 20]}}],
    )
    sio.dump(gbc.estimator, directory / "model.skops")
    with pytest.raises(UntrustedModelError, match=re.escape(f"CONVEYOR_TRUSTED_TYPES={TREE}")):
        resolve_model_uri(str(directory), settings)
    resolved = resolve_model_uri(str(directory), trusting)
    out = resolved.model.predict({"x": gbc.x[:3]})
    assert out["label"].tolist() == gbc.estimator.predict(gbc.x[:3]).tolist()


def test_onnx_flavour(tmp_path: Path, settings: Settings, serve: Serve) -> None:
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType  # type: ignore[import-untyped]
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    x, y = make_classification(n_samples=100, n_features=4, random_state=3)
    x = x.astype(np.float32)
    est = LogisticRegression().fit(x, y)
    onx = skl2onnx.convert_sklearn(est, initial_types=[("input", FloatTensorType([None, 4]))])
    directory = _mlmodel(
        tmp_path / "onnx-model",
        """  onnx:
    code: null
    data: model.onnx
    onnx_version: 1.16.0
    providers: [CPUExecutionProvider]""",
        [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}],
    )
    (directory / "model.onnx").write_bytes(onx.SerializeToString())
    base = serve(directory, settings)
    r = httpx.post(f"{base}/invocations", json={"instances": x[:6].tolist()})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == est.predict(x[:6]).tolist()


def test_bad_directories(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(ModelError, match="no MLmodel file"):
        resolve_model_uri(str(tmp_path), settings)
    escaping = _mlmodel(
        tmp_path / "escape",
        """  sklearn:
    pickled_model: ../../etc/passwd
    serialization_format: pickle""",
        [],
    )
    with pytest.raises(ModelError, match="outside the model directory"):
        resolve_model_uri(str(escaping), settings, trusted=True)
    other = _mlmodel(tmp_path / "torch", "  pytorch:\n    model_data: data", [])
    with pytest.raises(ModelError, match="pytorch"):
        resolve_model_uri(str(other), settings)


ONNX_FLAVOR = """  onnx:
    code: null
    data: model.onnx
    onnx_version: 1.16.0
    providers: [CPUExecutionProvider]
  python_function:
    data: model.onnx
    env: {conda: conda.yaml, virtualenv: python_env.yaml}
    loader_module: mlflow.onnx
    python_version: 3.11.7"""

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _columns_onnx_dir(tmp_path: Path) -> tuple[Path, Any, Any]:
    """A 4-feature forest exported to ONNX (one [None, 4] float input), column signature."""
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    x, y = make_classification(n_samples=150, n_features=4, n_informative=3, n_redundant=0,
                               n_classes=3, random_state=5)  # fmt: skip
    est = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    onx = skl2onnx.convert_sklearn(est, initial_types=[("float_input", FloatTensorType([None, 4]))])
    directory = _mlmodel(
        tmp_path / "onnx-columns",
        ONNX_FLAVOR,
        [{"type": "double", "name": name, "required": True} for name in COLUMNS],
    )
    (directory / "model.onnx").write_bytes(onx.SerializeToString())
    return directory, onx, x


def _onnx_labels(onx: Any, feeds: dict[str, Any]) -> list[Any]:
    """What onnxruntime itself answers for these feeds: the reference to compare with."""
    import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]

    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    labels: list[Any] = session.run(None, feeds)[0].tolist()
    return labels


def test_onnx_flavour_with_a_column_signature_serves_dataframes(
    tmp_path: Path, settings: Settings, serve: Serve
) -> None:
    directory, onx, x = _columns_onnx_dir(tmp_path)
    resolved = resolve_model_uri(str(directory), settings)
    assert resolved.run_id == RUN_ID
    assert [(f.name, f.dtype, f.shape) for f in resolved.model.signature.inputs] == [
        (name, "float64", ()) for name in COLUMNS
    ]
    base = serve(resolved)
    expected = _onnx_labels(onx, {"float_input": x[:8].astype(np.float32)})

    # Columns in another order than the signature's: they are matched by name.
    order = [3, 0, 2, 1]
    split = {"columns": [COLUMNS[i] for i in order], "data": x[:8, order].tolist()}
    r = httpx.post(f"{base}/invocations", json={"dataframe_split": split})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": expected}

    records = [dict(zip(COLUMNS, row, strict=True)) for row in x[:8].tolist()]
    r = httpx.post(f"{base}/invocations", json={"dataframe_records": records})
    assert r.json() == {"predictions": expected}

    r = httpx.post(f"{base}/predict", json=records[:2])
    assert [row["label"] for row in r.json()] == expected[:2]

    meta = httpx.get(f"{base}/v2/models/onnx-columns").json()
    assert [i["name"] for i in meta["inputs"]] == COLUMNS

    bad = {"columns": COLUMNS, "data": [[1.0, "wide", 2.0, 3.0]]}
    r = httpx.post(f"{base}/invocations", json={"dataframe_split": bad})
    assert r.status_code == 400
    error = r.json()["error"]
    assert "sepal_width" in error
    assert "float64" in error


def test_onnx_flavour_with_one_graph_input_per_column(
    tmp_path: Path, settings: Settings, serve: Serve
) -> None:
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"age": rng.normal(40, 10, 80), "income": rng.normal(5, 2, 80)})
    y = (frame["age"] / 10 + frame["income"] > 9).astype(int)
    est = make_pipeline(
        ColumnTransformer([("num", StandardScaler(), ["age", "income"])]), LogisticRegression()
    ).fit(frame, y)
    onx = skl2onnx.convert_sklearn(
        est,
        initial_types=[(c, FloatTensorType([None, 1])) for c in ("age", "income")],
        options={"zipmap": False},
    )
    # The signature lists the columns in another order than the graph's inputs.
    directory = _mlmodel(
        tmp_path / "onnx-inputs",
        ONNX_FLAVOR,
        [
            {"type": "double", "name": "income", "required": True},
            {"type": "double", "name": "age", "required": True},
        ],
    )
    (directory / "model.onnx").write_bytes(onx.SerializeToString())
    base = serve(directory, settings)
    head = frame.iloc[:6]
    expected = _onnx_labels(
        onx, {c: head[[c]].to_numpy(dtype=np.float32) for c in ("age", "income")}
    )
    split = head[["income", "age"]].to_dict(orient="split")
    r = httpx.post(
        f"{base}/invocations",
        json={"dataframe_split": {"columns": split["columns"], "data": split["data"]}},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": expected}


def test_column_signatures_that_cannot_feed_the_graph_are_refused(
    tmp_path: Path, settings: Settings
) -> None:
    directory, _, _ = _columns_onnx_dir(tmp_path)
    text = (directory / "MLmodel").read_text()
    three = json.dumps([{"type": "double", "name": n, "required": True} for n in COLUMNS[:3]])
    four = json.dumps([{"type": "double", "name": n, "required": True} for n in COLUMNS])
    (directory / "MLmodel").write_text(text.replace(four, three))
    with pytest.raises(
        ModelError, match=r"3 column\(s\) but the graph input 'float_input' takes 4"
    ):
        resolve_model_uri(str(directory), settings)
