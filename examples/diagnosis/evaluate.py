"""Summarise the test set on Dask (a LocalCluster here; a real cluster with --dask.scheduler)."""

import pandas as pd

import conveyor

client = conveyor.batch.dask()
test = pd.read_csv(conveyor.input("data/test.csv"))
chunks = [test.iloc[i : i + 50] for i in range(0, len(test), 50)]
counts = client.gather(client.map(lambda chunk: chunk["diagnosis"].value_counts(), chunks))
total = pd.concat(counts).groupby(level=0).sum()
client.close()
conveyor.log_metrics({f"test_{label}": float(n) for label, n in total.items()})
print("test set:", ", ".join(f"{n} {label}" for label, n in total.items()), "(counted on Dask)")
