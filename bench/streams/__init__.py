"""Stream throughput: load-generator | transform | throughput per binder vs a hand-written loop."""
