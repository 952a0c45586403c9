"""Export scikit-learn's bundled breast-cancer data set as train/test CSV files (no download)."""

from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

import conveyor

test_size = conveyor.param("test_size", 0.25)

frame = load_breast_cancer(as_frame=True).frame
frame["diagnosis"] = frame.pop("target").map({0: "malignant", 1: "benign"})
train, test = train_test_split(frame, test_size=test_size, stratify=frame["diagnosis"])
train.to_csv(conveyor.output("data/train.csv"), index=False)
test.to_csv(conveyor.output("data/test.csv"), index=False)
print(f"prepared {len(train)} training rows and {len(test)} test rows")
