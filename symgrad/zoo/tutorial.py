"""The tutorial's first models, written once in sympy (each a function returning a Model)."""

from __future__ import annotations

import sympy as sp

from .. import ops
from ..domains import Choice, Normal, Uniform
from ..entries import matrix
from ..model import Model
from ..zoo_index import describe
from . import native


def chain_rule() -> Model:
    """y = f(g(x)) with g(x) = x^2 and f(u) = sin(u): dy/dx = cos(x^2) 2x."""
    x = sp.Symbol("x")
    u = ops.step(x**2, label="u")
    y = ops.step(sp.sin(u), label="y")
    return Model("chain_rule", y, params={x: Uniform(-3, 3)},
                 description=describe("chain_rule"),
                 reference=native.chain_rule)


def neuron() -> Model:
    """z = x w + b, a = sigmoid(z), L = BCE(a, y): the tutorial's autograd example."""
    x, y, w, b = sp.symbols("x y w b")
    z = ops.step(x * w + b, label="z")
    a = ops.sigmoid(z, label="a")
    loss = ops.bce(a, y, label="L")
    return Model("neuron", loss, params=[w, b],
                 inputs={x: Uniform(-3, 3), y: Choice([0.0, 1.0])},
                 description=describe("neuron"),
                 reference=native.neuron)


def simplenet() -> Model:
    """Linear(10,5) -> ReLU -> Linear(5,1) -> Sigmoid -> BCE, as in the tutorial's network."""
    x = matrix("x", 10)
    W1, b1 = matrix("W1", 5, 10), matrix("b1", 5)
    W2, b2 = matrix("W2", 1, 5), matrix("b2", 1)
    y = sp.Symbol("y")
    h = ops.linear(x, W1, b1, label="h")  # (5, 1)
    r = ops.relu(h, label="r")  # (5, 1)
    z = ops.linear(r, W2, b2, label="z")  # (1, 1)
    a = ops.sigmoid(z, label="a")  # (1, 1)
    loss = ops.bce(a[0, 0], y, label="L")
    model = Model("simplenet", loss, params=[W1, b1, W2, b2],
                  inputs={x: Normal(), y: Choice([0.0, 1.0])},
                  description=describe("simplenet"),
                  reference=native.simplenet)
    model.layer_names = frozenset({"W1", "b1", "W2", "b2"})  # layer 1's and 2's: W^(1), b^(2)
    return model


def tensor_ops() -> Model:
    """reshape, transpose and matmul composed into a scalar loss: mse(R R^T, X), R = A.reshape(3, 2)."""
    A = matrix("A", 2, 3)
    X = matrix("X", 3, 3)
    R = ops.reshape(A, 3, 2)  # (3, 2)
    P = ops.matmul(R, ops.transpose(R), label="P")  # (3, 3)
    loss = ops.mse(P, X, label="L")
    return Model("tensor_ops", loss, params=[A], inputs={X: Normal()},
                 description=describe("tensor_ops"),
                 reference=native.tensor_ops)
