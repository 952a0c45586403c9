"""NeuralNetwork: layers compiled into weight matrices, a batch forward-propagated at once.

Inputs are the NeuralInput derived fields; each NeuralLayer becomes a dense
(inputs x neurons) weight matrix over the neurons before it, a bias vector,
an activation and an optional softmax/simplemax normalisation. NeuralOutputs
map output neurons to class probabilities (NormDiscrete) or to the predicted
value (FieldRef, or NormContinuous which is inverted).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from conveyor.errors import ModelError
from conveyor.models.pmml._link import simplemax, softmax
from conveyor.models.pmml._values import Array, cast
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.core import CompiledModel, Context, Result, classify
from conveyor.models.pmml.expressions import EXPRESSION_TAGS, compile_expression
from conveyor.models.pmml.scope import Scope

__all__ = ["NeuralNetwork"]


def _threshold(threshold: float) -> Callable[[Array], Array]:
    return lambda z: (z > threshold).astype(np.float64)


_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "identity": lambda z: z,
    "logistic": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
    "exponential": np.exp,
    "reciprocal": lambda z: 1.0 / z,
    "square": lambda z: z * z,
    "Gauss": lambda z: np.exp(-(z * z)),
    "sine": np.sin,
    "cosine": np.cos,
    "Elliott": lambda z: z / (1.0 + np.abs(z)),
    "arctan": lambda z: 2.0 * np.arctan(z) / np.pi,
    "rectifier": lambda z: np.maximum(z, 0.0),
}


class _Layer:
    def __init__(
        self,
        el: Element,
        index: dict[str, int],
        activation: str,
        normalization: str,
        threshold: float,
    ) -> None:
        neurons = el.findall("Neuron")
        self.ids = [n.require("id") for n in neurons]
        self.weights = np.zeros((len(index), len(neurons)))
        self.bias = np.array([float(n.get("bias", "0")) for n in neurons])
        for j, neuron in enumerate(neurons):
            for con in neuron.findall("Con"):
                source = con.require("from")
                if source not in index:
                    raise ModelError(f"{con.where}: connection from unknown neuron {source!r}")
                self.weights[index[source], j] += float(con.require("weight"))
        act = el.get("activationFunction", activation)
        if act == "threshold":
            self.activation = _threshold(float(el.get("threshold", str(threshold))))
        elif act in _ACTIVATIONS:
            self.activation = _ACTIVATIONS[act]
        else:
            raise unsupported(el, f"activationFunction={act!r}")
        self.normalization = el.get("normalizationMethod", normalization)
        if self.normalization not in ("none", "softmax", "simplemax"):
            raise unsupported(el, f"normalizationMethod={self.normalization!r}")

    def forward(self, values: Array) -> Array:
        with np.errstate(all="ignore"):
            z = values @ self.weights + self.bias
            out = self.activation(z)
        if self.normalization == "softmax":
            return softmax(out)
        if self.normalization == "simplemax":
            return simplemax(out)
        return np.asarray(out)


class NeuralNetwork(CompiledModel):
    """Feed-forward multilayer perceptrons."""

    def __init__(self, el: Element, ctx: Context) -> None:
        super().__init__(el, ctx)
        inputs_el = el.find("NeuralInputs")
        if inputs_el is None:
            raise ModelError(f"{el.where}: <NeuralNetwork> needs NeuralInputs")
        self.inputs = []
        ids: list[str] = []
        for ni in inputs_el.findall("NeuralInput"):
            df = ni.find("DerivedField")
            body = [c for c in df.children if c.tag in EXPRESSION_TAGS] if df is not None else []
            if not body:
                raise ModelError(f"{ni.where}: <NeuralInput> needs a DerivedField expression")
            self.inputs.append(compile_expression(body[0]))
            ids.append(ni.require("id"))
        activation = el.get("activationFunction", "identity")
        normalization = el.get("normalizationMethod", "none")
        threshold = float(el.get("threshold", "0"))
        self.layers: list[_Layer] = []
        # each layer sees every neuron defined before it (inputs and earlier layers)
        known = list(ids)
        self.positions: dict[str, tuple[int, int]] = {}  # neuron id -> (layer, column)
        for li, layer_el in enumerate(el.findall("NeuralLayer")):
            index = {nid: i for i, nid in enumerate(known)}
            layer = _Layer(layer_el, index, activation, normalization, threshold)
            self.layers.append(layer)
            for j, nid in enumerate(layer.ids):
                self.positions[nid] = (li, j)
            known.extend(layer.ids)
        self.n_inputs = len(ids)
        self._compile_outputs(el)

    def _compile_outputs(self, el: Element) -> None:
        outputs = el.find("NeuralOutputs")
        if outputs is None:
            raise ModelError(f"{el.where}: <NeuralNetwork> needs NeuralOutputs")
        self.class_neurons: dict[Any, str] = {}
        self.value_neuron: str | None = None
        self.denorm: tuple[Array, Array] | None = None
        for no in outputs.findall("NeuralOutput"):
            neuron = no.require("outputNeuron")
            df = no.find("DerivedField")
            expr = next((c for c in df.children if c.tag in EXPRESSION_TAGS), None) if df else None
            if expr is None:
                raise ModelError(f"{no.where}: <NeuralOutput> needs a DerivedField expression")
            if expr.tag == "NormDiscrete":
                self.class_neurons[self.label(expr.require("value"))] = neuron
            elif expr.tag == "FieldRef":
                self.value_neuron = neuron
            elif expr.tag == "NormContinuous":
                self.value_neuron = neuron
                pts = [
                    (float(p.require("orig")), float(p.require("norm")))
                    for p in expr.findall("LinearNorm")
                ]
                self.denorm = (np.array([p[1] for p in pts]), np.array([p[0] for p in pts]))
            else:
                raise unsupported(expr, f"<{expr.tag}> in a NeuralOutput")
        if self.function == "classification":
            self.classes: list[Any] = list(self.class_neurons)

    def forward(self, scope: Scope) -> list[Array]:
        values = (
            np.column_stack([cast(f(scope), "double").astype(np.float64) for f in self.inputs])
            if self.inputs
            else np.zeros((scope.n, 0))
        )
        activations = values
        outs = []
        for layer in self.layers:
            out = layer.forward(activations[:, : layer.weights.shape[0]])
            outs.append(out)
            activations = np.column_stack([activations, out])
        return outs

    def _neuron(self, outs: list[Array], neuron: str) -> Array:
        pos = self.positions.get(neuron)
        if pos is None:
            raise ModelError(f"{self.el.where}: output neuron {neuron!r} does not exist")
        return outs[pos[0]][:, pos[1]]

    def score(self, scope: Scope) -> Result:
        outs = self.forward(scope)
        if self.function == "regression":
            if self.value_neuron is None:
                raise ModelError(f"{self.el.where}: no NeuralOutput gives the predicted value")
            y = self._neuron(outs, self.value_neuron)
            if self.denorm is not None:
                norm, orig = self.denorm
                order = np.argsort(norm)
                y = np.interp(y, norm[order], orig[order], left=np.nan, right=np.nan)
                y = _extrapolate(y, outs, self)
            return Result(value=y)
        probabilities = {c: self._neuron(outs, nid) for c, nid in self.class_neurons.items()}
        value = classify(probabilities, self.classes, self.target_type)
        return Result(value=value, classes=self.classes, probabilities=probabilities)


def _extrapolate(y: Array, outs: list[Array], model: NeuralNetwork) -> Array:
    """Invert NormContinuous linearly beyond its end points too."""
    assert model.denorm is not None
    assert model.value_neuron is not None
    norm, orig = model.denorm
    raw = model._neuron(outs, model.value_neuron)
    lo = orig[0] + (raw - norm[0]) * (orig[1] - orig[0]) / (norm[1] - norm[0])
    hi = orig[-2] + (raw - norm[-2]) * (orig[-1] - orig[-2]) / (norm[-1] - norm[-2])
    y = np.where(raw < norm.min(), lo, y)
    return np.where(raw > norm.max(), hi, y)
