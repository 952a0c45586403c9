"""Regenerate the differential PMML cases: pipelines users build, exported by sklearn2pmml.

Each case is a scikit-learn (or LightGBM / XGBoost) pipeline fitted on a small
synthetic data set, exported to ``cases/<name>.pmml`` with sklearn2pmml, and
scored by the fitted pipeline itself on the same rows: ``cases/<name>.csv``
holds those outputs (``predict`` and, for classifiers, ``predict_proba``).
The inputs are ``data/<dataset>.csv``. The test suite compares Conveyor's
scores with these files, so it needs neither Java nor these libraries.

Run it (Java 17+ on PATH) from the repository root in a throwaway venv::

    python3 -m venv /tmp/pmmlgen
    /tmp/pmmlgen/bin/pip install sklearn2pmml==0.133.1 scikit-learn==1.9.0 \
        lightgbm xgboost pandas
    /tmp/pmmlgen/bin/python tests/pmml/differential/generate.py [NAME ...]

The data are drawn from a fixed seed, so a rerun with the same library
versions rewrites identical inputs; ``cases/manifest.json`` records the
versions that made the committed files.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
CASES = HERE / "cases"
ROWS = 240
CONT = ["age", "income", "score"]
CAT = ["color", "region"]


def mixed_frame(seed: int = 16) -> pd.DataFrame:
    """Continuous and categorical columns, each with missing values, and two targets."""
    rng = np.random.default_rng(seed)
    n = ROWS
    age = rng.normal(40, 12, n).round(1)
    income = rng.lognormal(10, 0.5, n).round(2)
    score = rng.uniform(-3, 3, n).round(3)
    color = rng.choice(["red", "green", "blue"], n)
    region = rng.choice(["north", "south", "east", "west"], n)
    logit = 0.05 * (age - 40) + 0.8 * score + np.where(color == "red", 1.0, -0.5)
    logit += np.where(region == "north", 0.7, 0.0) + rng.normal(0, 0.7, n)
    label = np.where(logit > 0.8, "high", np.where(logit < -0.6, "low", "mid"))
    value = 2.0 * score + 0.03 * age + np.where(color == "blue", 1.5, 0.0) + rng.normal(0, 0.3, n)
    frame = pd.DataFrame(
        {
            "age": age,
            "income": income,
            "score": score,
            "color": color.astype(object),
            "region": region.astype(object),
        }
    )
    for col, rate in (("age", 0.08), ("income", 0.06), ("color", 0.07), ("region", 0.05)):
        frame.loc[rng.random(n) < rate, col] = np.nan if col in CONT else None
    frame["label"] = label
    frame["value"] = value.round(4)
    return frame


def text_frame(seed: int = 16) -> pd.DataFrame:
    """Short reviews in mixed case with punctuation, labelled by their words."""
    rng = np.random.default_rng(seed)
    good = ["great", "Excellent", "love", "fine", "nice", "superb"]
    bad = ["awful", "Terrible", "hate", "broken", "poor", "slow"]
    filler = ["the", "product", "delivery", "was", "and", "it", "Service", "really"]
    texts, labels = [], []
    for _ in range(ROWS):
        positive = rng.random() < 0.5
        words = list(rng.choice(filler, rng.integers(2, 6)))
        words += list(rng.choice(good if positive else bad, rng.integers(1, 3)))
        words += list(rng.choice(bad if positive else good, rng.integers(0, 2)))
        rng.shuffle(words)
        texts.append(" ".join(str(w) for w in words) + rng.choice(["", ".", "!", " !!"]))
        labels.append("pos" if positive else "neg")
    return pd.DataFrame({"text": texts, "sentiment": labels})


def dates_frame(seed: int = 16) -> pd.DataFrame:
    """A date and a date-time column (ISO 8601 text), and a value that depends on both."""
    rng = np.random.default_rng(seed)
    n = ROWS
    days = rng.integers(0, 3 * 365, n)
    seconds = rng.integers(0, 86400 * 400, n)
    day = pd.Timestamp("2021-03-01") + pd.to_timedelta(days, unit="D")
    stamp = pd.Timestamp("2023-10-15") + pd.to_timedelta(seconds, unit="s")
    hour = stamp.hour.to_numpy()
    value = 0.01 * days + np.where((hour >= 9) & (hour < 17), 3.0, 0.0) + day.dayofweek.to_numpy()
    return pd.DataFrame(
        {
            "day": day.strftime("%Y-%m-%d"),
            "stamp": stamp.strftime("%Y-%m-%dT%H:%M:%S"),
            "value": (value + rng.normal(0, 0.2, n)).round(4),
        }
    )


# -- pipelines ---------------------------------------------------------------------------


def _impute_scale_onehot(scale: bool = True) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if scale:
        numeric.append(("scale", StandardScaler()))
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(sparse_output=False)),
        ]
    )
    return ColumnTransformer([("num", Pipeline(numeric), CONT), ("cat", categorical, CAT)])


def _ordinal(passthrough_missing: bool = True) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OrdinalEncoder

    return ColumnTransformer(
        [("num", "passthrough", CONT), ("cat", OrdinalEncoder(), CAT)],
    )


def _classifier(name: str) -> Any:
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    return {
        "DecisionTree": lambda: DecisionTreeClassifier(max_depth=5, random_state=1),
        "RandomForest": lambda: RandomForestClassifier(
            n_estimators=15, max_depth=6, random_state=1
        ),
        "ExtraTrees": lambda: ExtraTreesClassifier(n_estimators=15, max_depth=6, random_state=1),
        "GradientBoosting": lambda: GradientBoostingClassifier(
            n_estimators=20, max_depth=3, random_state=1
        ),
        "LogisticRegression": lambda: LogisticRegression(max_iter=500),
        "SVC": lambda: SVC(kernel="rbf", gamma=0.2, C=2.0, probability=False),
        "MLP": lambda: MLPClassifier(hidden_layer_sizes=(8,), max_iter=600, random_state=1),
        "GaussianNB": GaussianNB,
    }[name]()


def _classify(name: str) -> Callable[[], tuple[Any, str, str]]:
    def build() -> tuple[Any, str, str]:
        from sklearn2pmml.pipeline import PMMLPipeline

        pre = _impute_scale_onehot(scale=name not in ("DecisionTree", "RandomForest"))
        return PMMLPipeline([("pre", pre), ("model", _classifier(name))]), "mixed", "label"

    return build


def _regress(name: str) -> Callable[[], tuple[Any, str, str]]:
    def build() -> tuple[Any, str, str]:
        from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
        from sklearn.linear_model import LinearRegression
        from sklearn.svm import SVR
        from sklearn2pmml.pipeline import PMMLPipeline

        models: dict[str, Callable[[], tuple[Any, Any]]] = {
            "LinearRegression": lambda: (_impute_scale_onehot(), LinearRegression()),
            "RandomForestRegressor": lambda: (
                _impute_scale_onehot(scale=False),
                RandomForestRegressor(n_estimators=10, max_depth=5, random_state=1),
            ),
            "SVR": lambda: (_impute_scale_onehot(), SVR(kernel="rbf", gamma=0.2)),
            "HistGradientBoostingRegressor": lambda: (
                _ordinal(),
                HistGradientBoostingRegressor(
                    max_iter=20, categorical_features=[3, 4], random_state=1
                ),
            ),
        }
        pre, model = models[name]()
        return PMMLPipeline([("pre", pre), ("model", model)]), "mixed", "value"

    return build


def _hist_gradient_boosting() -> tuple[Any, str, str]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn2pmml.pipeline import PMMLPipeline

    model = HistGradientBoostingClassifier(
        max_iter=15, max_depth=4, categorical_features=[3, 4], random_state=1
    )
    return PMMLPipeline([("pre", _ordinal()), ("model", model)]), "mixed", "label"


def _native_missing(name: str) -> Callable[[], tuple[Any, str, str]]:
    """Trees that route missing values themselves (scikit-learn >= 1.4), on ordinal codes."""

    def build() -> tuple[Any, str, str]:
        from sklearn.compose import ColumnTransformer
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.preprocessing import OrdinalEncoder
        from sklearn.tree import DecisionTreeClassifier
        from sklearn2pmml.pipeline import PMMLPipeline

        pre = ColumnTransformer(
            [("num", "passthrough", CONT), ("cat", OrdinalEncoder(), CAT)],
        )
        model = (
            RandomForestClassifier(n_estimators=15, max_depth=6, random_state=1)
            if name == "RandomForest"
            else DecisionTreeClassifier(max_depth=5, random_state=1)
        )
        return PMMLPipeline([("pre", pre), ("model", model)]), "mixed", "label"

    return build


def _lightgbm() -> tuple[Any, str, str]:
    from lightgbm import LGBMClassifier
    from sklearn2pmml.pipeline import PMMLPipeline

    model = LGBMClassifier(n_estimators=20, num_leaves=8, min_child_samples=5, verbose=-1)
    pipeline = PMMLPipeline([("pre", _ordinal()), ("model", model)])
    pipeline.fit_kwargs = {"model__categorical_feature": [3, 4]}
    return pipeline, "mixed", "label"


def _xgboost_categorical() -> tuple[Any, str, str]:
    """XGBoost's own categorical splits over ordinal codes, missing values left to it."""
    from sklearn2pmml.pipeline import PMMLPipeline
    from xgboost import XGBClassifier

    model = XGBClassifier(
        n_estimators=20,
        max_depth=3,
        enable_categorical=True,
        feature_types=["q", "q", "q", "c", "c"],
        max_cat_to_onehot=1,
        random_state=1,
    )
    pipeline = PMMLPipeline([("pre", _ordinal()), ("model", model)])
    pipeline.encode_target = True
    return pipeline, "mixed", "label"


def _xgboost_binary() -> tuple[Any, str, str]:
    pipeline, dataset, target = _xgboost(trees=60)
    pipeline.binary_target = "high"
    return pipeline, dataset, target


def _xgboost(trees: int = 20) -> tuple[Any, str, str]:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder
    from sklearn2pmml.pipeline import PMMLPipeline
    from xgboost import XGBClassifier

    # continuous columns keep their missing values: XGBoost routes them itself
    categorical = Pipeline(
        [("impute", SimpleImputer(strategy="most_frequent")), ("onehot", OneHotEncoder())]
    )
    pre = ColumnTransformer([("num", "passthrough", CONT), ("cat", categorical, CAT)])
    model = XGBClassifier(n_estimators=trees, max_depth=3, learning_rate=0.3, random_state=1)
    pipeline = PMMLPipeline([("pre", pre), ("model", model)])
    # XGBoost wants classes 0..k-1; the document then declares integer classes
    pipeline.encode_target = True
    return pipeline, "mixed", "label"


def _kmeans() -> tuple[Any, str, str]:
    from sklearn.cluster import KMeans
    from sklearn2pmml.pipeline import PMMLPipeline

    model = KMeans(n_clusters=4, n_init=3, random_state=1)
    return PMMLPipeline([("pre", _impute_scale_onehot()), ("model", model)]), "mixed", ""


def _isolation_forest() -> tuple[Any, str, str]:
    from sklearn.ensemble import IsolationForest
    from sklearn2pmml.pipeline import PMMLPipeline

    model = IsolationForest(n_estimators=20, random_state=1)
    pre = _impute_scale_onehot(scale=False)
    return PMMLPipeline([("pre", pre), ("model", model)]), "mixed", ""


def _dates(name: str) -> Callable[[], tuple[Any, str, str]]:
    """Date features as sklearn2pmml writes them: days and seconds since a year, seconds
    since midnight (its DateTimeFormatter cannot sit in a pipeline: its fit takes no y)."""

    def build() -> tuple[Any, str, str]:
        from sklearn.compose import ColumnTransformer
        from sklearn.linear_model import LinearRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.tree import DecisionTreeRegressor
        from sklearn2pmml.decoration import DateDomain, DateTimeDomain
        from sklearn2pmml.pipeline import PMMLPipeline
        from sklearn2pmml.preprocessing import (
            DaysSinceYearTransformer,
            SecondsSinceMidnightTransformer,
            SecondsSinceYearTransformer,
        )

        # stateless transformers that scikit-learn >= 1.8 would call unfitted inside a Pipeline
        for stateless in (
            DaysSinceYearTransformer,
            SecondsSinceMidnightTransformer,
            SecondsSinceYearTransformer,
        ):
            stateless.__sklearn_is_fitted__ = lambda self: True
        pre = ColumnTransformer(
            [
                ("days", make_pipeline(DateDomain(), DaysSinceYearTransformer(1990)), ["day"]),
                (
                    "clock",
                    make_pipeline(DateTimeDomain(), SecondsSinceMidnightTransformer()),
                    ["stamp"],
                ),
                (
                    "seconds",
                    make_pipeline(DateTimeDomain(), SecondsSinceYearTransformer(2000)),
                    ["stamp"],
                ),
            ]
        )
        model = (
            LinearRegression()
            if name == "Linear"
            else DecisionTreeRegressor(max_depth=5, random_state=1)
        )
        pipeline = PMMLPipeline([("pre", pre), ("model", model)])
        pipeline.temporal = ["day", "stamp"]
        return pipeline, "dates", "value"

    return build


def _text(vectorizer: str, classifier: str) -> Callable[[], tuple[Any, str, str]]:
    def build() -> tuple[Any, str, str]:
        from sklearn.compose import ColumnTransformer
        from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.naive_bayes import MultinomialNB
        from sklearn2pmml.feature_extraction.text import Splitter
        from sklearn2pmml.pipeline import PMMLPipeline

        options: dict[str, Any] = {
            "analyzer": "word",
            "tokenizer": Splitter(),
            "token_pattern": None,
        }
        vec = (
            CountVectorizer(**options)
            if vectorizer == "Count"
            else TfidfVectorizer(norm=None, **options)
        )
        model = LogisticRegression(max_iter=500) if classifier == "Logistic" else MultinomialNB()
        # a column name, not a list: the vectorizer takes the one text column as 1-D
        pre = ColumnTransformer([("vec", vec, "text")])
        return PMMLPipeline([("pre", pre), ("model", model)]), "text", "sentiment"

    return build


BUILDERS: dict[str, Callable[[], tuple[Any, str, str]]] = {
    "DecisionTreeMixed": _classify("DecisionTree"),
    "RandomForestMixed": _classify("RandomForest"),
    "RandomForestNaNMixed": _native_missing("RandomForest"),
    "DecisionTreeNaNMixed": _native_missing("DecisionTree"),
    "ExtraTreesMixed": _classify("ExtraTrees"),
    "GradientBoostingMixed": _classify("GradientBoosting"),
    "HistGradientBoostingMixed": _hist_gradient_boosting,
    "LogisticRegressionMixed": _classify("LogisticRegression"),
    "SVCMixed": _classify("SVC"),
    "MLPMixed": _classify("MLP"),
    "GaussianNBMixed": _classify("GaussianNB"),
    "LinearRegressionMixed": _regress("LinearRegression"),
    "RandomForestRegressorMixed": _regress("RandomForestRegressor"),
    "SVRMixed": _regress("SVR"),
    "HistGradientBoostingRegressorMixed": _regress("HistGradientBoostingRegressor"),
    "LightGBMMixed": _lightgbm,
    "XGBoostMixed": _xgboost,
    "XGBoostBinaryMixed": _xgboost_binary,
    "XGBoostCategoricalMixed": _xgboost_categorical,
    "KMeansMixed": _kmeans,
    "IsolationForestMixed": _isolation_forest,
    "DateFeaturesLinearDates": _dates("Linear"),
    "DateFeaturesTreeDates": _dates("Tree"),
    "CountVectorizerLogisticText": _text("Count", "Logistic"),
    "TfidfVectorizerNBText": _text("Tfidf", "NB"),
}


def expected_outputs(name: str, pipeline: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """What the fitted pipeline itself says about every row, column per output."""
    out: dict[str, Any] = {}
    if name.startswith("KMeans"):
        out["cluster"] = pipeline.predict(frame)
    elif name.startswith("IsolationForest"):
        out["decisionFunction"] = pipeline.decision_function(frame)
        out["outlier"] = pipeline.predict(frame) == -1
    else:
        out["predict"] = pipeline.predict(frame)
        if hasattr(pipeline, "predict_proba"):
            try:
                proba = pipeline.predict_proba(frame)
            except AttributeError:
                proba = None
            if proba is not None:
                for j, cls in enumerate(pipeline.classes_):
                    out[f"probability({cls})"] = proba[:, j]
    return pd.DataFrame(out)


def generate(names: list[str]) -> None:
    import sklearn
    from sklearn2pmml import sklearn2pmml

    DATA.mkdir(exist_ok=True)
    CASES.mkdir(exist_ok=True)
    frames = {"mixed": mixed_frame(), "text": text_frame(), "dates": dates_frame()}
    for key, frame in frames.items():
        frame.to_csv(DATA / f"{key}.csv", index=False, float_format="%.17g")
    for name in names:
        pipeline, dataset, target = BUILDERS[name]()
        # read back from the CSV so the model sees exactly what the suite will send
        frame = pd.read_csv(DATA / f"{dataset}.csv", keep_default_na=True)
        columns = {"text": ["text"], "dates": ["day", "stamp"]}.get(dataset, CONT + CAT)
        inputs = frame[columns]
        for column in getattr(pipeline, "temporal", []):
            inputs = inputs.assign(
                **{column: pd.to_datetime(inputs[column]).astype("datetime64[s]")}
            )
        kwargs = getattr(pipeline, "fit_kwargs", {})
        if target:
            y = frame[target].rename(target)
            if getattr(pipeline, "binary_target", None):
                y = (y == pipeline.binary_target).astype(int)
            elif getattr(pipeline, "encode_target", False):
                y = y.map({v: i for i, v in enumerate(sorted(y.unique()))})
            pipeline.fit(inputs, y, **kwargs)
        else:
            pipeline.fit(inputs, **kwargs)
        expected_outputs(name, pipeline, inputs).to_csv(
            CASES / f"{name}.csv", index=False, float_format="%.17g"
        )
        sklearn2pmml(pipeline, str(CASES / f"{name}.pmml"))
        print(f"{name}: ok", flush=True)
    manifest = {"versions": _versions(sklearn.__version__)}
    (CASES / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _versions(sklearn_version: str) -> dict[str, str]:
    from importlib.metadata import version

    out = {"scikit-learn": sklearn_version}
    for package in ("sklearn2pmml", "lightgbm", "xgboost", "pandas", "numpy"):
        out[package] = version(package)
    return out


if __name__ == "__main__":
    generate(sys.argv[1:] or list(BUILDERS))
