"""A training script the model registry's tests run with ``conveyor run``.

It saves, with ``conveyor.save_model``, the two models users serve most: a
scikit-learn Pipeline (a ColumnTransformer with OneHotEncoder on a string
column, SimpleImputer + StandardScaler on numbers, then LogisticRegression),
whose skops file needs ``numpy.dtype``, and a gradient-boosting model, whose
file needs ``sklearn.tree._tree.Tree``. ``bp > 120`` is the label.
"""

TRAIN = """
import numpy as np
import pandas as pd
import conveyor
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

rng = np.random.default_rng(conveyor.seed())
n = 300
X = pd.DataFrame({
    "sex": rng.choice(["f", "m"], n),
    "age": rng.integers(20, 80, n).astype(float),
    "bp": rng.normal(120, 10, n),
})
X.loc[::7, "age"] = np.nan
y = (X["bp"] > 120).astype(int)
prep = ColumnTransformer([
    ("cat", OneHotEncoder(handle_unknown="ignore"), ["sex"]),
    ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "bp"]),
])
pipe = Pipeline([("prep", prep), ("clf", LogisticRegression())]).fit(X, y)
conveyor.save_model(pipe, "pipeline", example=X.head())
numbers = X[["age", "bp"]].fillna(50.0)
trees = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(numbers, y)
conveyor.save_model(trees, "trees", example=numbers.head())
"""
