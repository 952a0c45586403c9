"""ONNX models through onnxruntime: signature from the graph, sklearn-style classifier outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

from conveyor.errors import ModelError
from conveyor.models import load_model

skl2onnx = pytest.importorskip("skl2onnx")
pytest.importorskip("onnxruntime")


def _convert(est: Any, n: int, path: Path, options: dict[int, Any] | None = None) -> Path:
    from skl2onnx.common.data_types import FloatTensorType  # type: ignore[import-untyped]

    onx = skl2onnx.convert_sklearn(
        est, initial_types=[("input", FloatTensorType([None, n]))], options=options
    )
    path.write_bytes(onx.SerializeToString())
    return path


@pytest.mark.parametrize("zipmap", [True, False])
def test_classifier_outputs_label_and_probabilities(tmp_path: Path, zipmap: bool) -> None:
    x, y = make_classification(n_samples=200, n_features=6, random_state=0)
    x = x.astype(np.float32)
    est = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(x, y)
    options = None if zipmap else {id(est): {"zipmap": False}}
    model = load_model(_convert(est, 6, tmp_path / "m.onnx", options))
    sig = model.signature
    assert [(f.name, f.dtype, f.shape) for f in sig.inputs] == [("input", "float32", (6,))]
    assert [f.name for f in sig.outputs] == ["label", "probabilities"]
    assert sig.task == "classification"
    assert sig.classes == (0, 1)
    out = model.predict({"input": x[:20]})
    np.testing.assert_array_equal(out["label"], est.predict(x[:20]))
    np.testing.assert_allclose(
        out["probabilities"], est.predict_proba(x[:20]), rtol=1e-4, atol=1e-5
    )


def test_string_classes_and_regression(tmp_path: Path) -> None:
    x, y = make_classification(
        n_samples=100, n_features=3, n_informative=2, n_redundant=0, random_state=1
    )
    labels = np.where(y == 1, "yes", "no")
    est = LogisticRegression().fit(x.astype(np.float32), labels)
    model = load_model(_convert(est, 3, tmp_path / "s.onnx"))
    assert model.signature.classes == ("no", "yes")
    out = model.predict({"input": x[:5].astype(np.float32)})
    assert out["label"].tolist() == est.predict(x[:5].astype(np.float32)).tolist()

    xr, yr = make_regression(n_samples=50, n_features=4, random_state=2)
    reg = LinearRegression().fit(xr, yr)
    rmodel = load_model(_convert(reg, 4, tmp_path / "r.onnx"))
    assert rmodel.signature.task == "regression"
    assert [f.name for f in rmodel.signature.outputs] == ["prediction"]
    pred = rmodel.predict({"input": xr[:5]})["prediction"]
    np.testing.assert_allclose(pred.ravel(), reg.predict(xr[:5]), rtol=1e-4)


def test_not_an_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"garbage")
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        load_model(path)
