"""XGBoost and LightGBM native model files: signatures and predictions as the libraries give."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression

from conveyor.config import Settings
from conveyor.errors import ModelError
from conveyor.models import load_model

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")


def _binary() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_classification(n_samples=300, n_features=6, random_state=0)
    return x, y


@pytest.mark.parametrize("suffix", [".ubj", ".json"])
def test_xgboost_binary_classifier(tmp_path: Path, suffix: str) -> None:
    x, y = _binary()
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(x, label=y), 10
    )
    path = tmp_path / f"model{suffix}"
    booster.save_model(str(path))
    model = load_model(path)
    sig = model.signature
    assert [(f.name, f.shape) for f in sig.inputs] == [("x", (6,))]
    assert [f.name for f in sig.outputs] == ["label", "probabilities"]
    assert sig.classes == (0, 1)
    out = model.predict({"x": x[:20]})
    p = booster.inplace_predict(x[:20])
    np.testing.assert_allclose(out["probabilities"][:, 1], p, rtol=1e-6)
    np.testing.assert_array_equal(out["label"], (p > 0.5).astype(int))


def test_xgboost_named_multiclass_and_regression(tmp_path: Path) -> None:
    x, y = make_classification(
        n_samples=300, n_features=4, n_informative=3, n_redundant=0, n_classes=3, random_state=1
    )
    names = ["a", "b", "c", "d"]
    booster = xgb.train(
        {"objective": "multi:softprob", "num_class": 3},
        xgb.DMatrix(x, label=y, feature_names=names),
        5,
    )
    booster.save_model(str(tmp_path / "multi.ubj"))
    model = load_model(tmp_path / "multi.ubj")
    assert model.signature.input_names == names
    assert model.signature.classes == (0, 1, 2)
    out = model.predict({n: x[:5, i] for i, n in enumerate(names)})
    expected = booster.predict(xgb.DMatrix(x[:5], feature_names=names))
    np.testing.assert_allclose(out["probabilities"], expected, rtol=1e-6)

    xr, yr = make_regression(n_samples=100, n_features=3, random_state=2)
    reg = xgb.train({"objective": "reg:squarederror"}, xgb.DMatrix(xr, label=yr), 5)
    reg.save_model(str(tmp_path / "reg.json"))
    rmodel = load_model(tmp_path / "reg.json")
    assert rmodel.signature.task == "regression"
    np.testing.assert_allclose(
        rmodel.predict({"x": xr[:4]})["prediction"], reg.inplace_predict(xr[:4]), rtol=1e-6
    )


def test_lightgbm_models(tmp_path: Path) -> None:
    x, y = _binary()
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 7}, lgb.Dataset(x, label=y), 10
    )
    booster.save_model(str(tmp_path / "model.txt"))
    model = load_model(tmp_path / "model.txt")
    assert [(f.name, f.shape) for f in model.signature.inputs] == [("x", (6,))]
    out = model.predict({"x": x[:10]})
    np.testing.assert_allclose(out["probabilities"][:, 1], booster.predict(x[:10]), rtol=1e-6)

    x3, y3 = make_classification(
        n_samples=300, n_features=4, n_informative=3, n_redundant=0, n_classes=3, random_state=1
    )
    names = ["a", "b", "c", "d"]
    multi = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1},
        lgb.Dataset(x3, label=y3, feature_name=names),
        5,
    )
    multi.save_model(str(tmp_path / "multi.lgbm"))
    mmodel = load_model(tmp_path / "multi.lgbm")
    assert mmodel.signature.input_names == names
    assert mmodel.signature.classes == (0, 1, 2)
    mout = mmodel.predict({n: x3[:5, i] for i, n in enumerate(names)})
    np.testing.assert_allclose(mout["probabilities"], multi.predict(x3[:5]), rtol=1e-6)
    np.testing.assert_array_equal(mout["label"], multi.predict(x3[:5]).argmax(axis=1))


def test_not_booster_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match="not a LightGBM text model"):
        load_model(tmp_path / "notes.txt")
    (tmp_path / "data.json").write_text('{"a": 1}')
    with pytest.raises(ModelError, match="not an XGBoost model"):
        load_model(tmp_path / "data.json")


def test_served_over_http_with_missing_values(tmp_path: Path, settings: Settings) -> None:
    """Boosters route NaN as missing, so a record may leave a feature out or send null."""
    from conveyor.serving import ServeOptions, resolve_model_uri
    from conveyor.serving.server import bind_sockets, run_in_thread
    from tests.serving.conftest import wait_ready

    x, y = make_classification(n_samples=200, n_features=3, n_informative=2, n_redundant=0)
    names = ["age", "income", "tenure"]
    booster = xgb.train(
        {"objective": "binary:logistic"}, xgb.DMatrix(x, label=y, feature_names=names), 5
    )
    booster.save_model(str(tmp_path / "churn.ubj"))
    resolved = resolve_model_uri(str(tmp_path / "churn.ubj"), settings)
    sock = bind_sockets("127.0.0.1", 0, 1)[0]
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    _, stop = run_in_thread(resolved, ServeOptions(graceful_timeout=5), sock)
    try:
        wait_ready(base)
        r = httpx.post(f"{base}/predict", json=[{"age": 1.0, "income": None}, {"tenure": 2.0}])
        assert r.status_code == 200, r.text
        rows = np.array([[1.0, np.nan, np.nan], [np.nan, np.nan, 2.0]])
        expected = booster.inplace_predict(rows)
        got = [row["probabilities"]["1"] for row in r.json()]
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    finally:
        stop()


def test_lightgbm_category_columns_take_category_names(tmp_path: Path) -> None:
    """A booster trained on a pandas category column scores the names, as LightGBM does."""
    import pandas as pd

    from conveyor.models.base import Signature
    from conveyor.serving.columns import ColumnBuilder

    rng = np.random.default_rng(0)
    colours = ["red", "green", "blue"]
    frame = pd.DataFrame(
        {
            "size": rng.normal(size=300),
            "colour": pd.Categorical(rng.choice(colours, 300), categories=colours),
        }
    )
    y = ((frame["colour"] == "red") | (frame["size"] > 1)).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(frame, label=y), 5)
    booster.save_model(str(tmp_path / "model.txt"))
    model = load_model(tmp_path / "model.txt")
    sig: Signature = model.signature
    colour = sig.inputs[1]
    assert (colour.name, colour.dtype, colour.values) == ("colour", "category", tuple(colours))
    rows = [
        {"size": 0.0, "colour": "red"},
        {"size": 2.0, "colour": "blue"},
        {"size": 0.0, "colour": "purple"},
    ]
    columns = ColumnBuilder(sig).from_records(rows)
    expected = booster.predict(
        pd.DataFrame(
            {
                "size": [0.0, 2.0, 0.0],
                "colour": pd.Categorical(["red", "blue", None], categories=colours),
            }
        )
    )
    # An unseen category is missing to LightGBM: it scores as a missing one.
    np.testing.assert_allclose(model.predict(columns)["probabilities"][:, 1], expected, rtol=1e-9)
