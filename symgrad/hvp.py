"""Second order: exact Hessian-vector products, verified as a first-order run.

The gradient is itself a program, so ``second_order(model)`` builds the *HVP model* of a tensor
program (``sg.verify`` passes a plain model as its program, ``symgrad.verify.as_program``): the same
parameters and inputs, one direction block ``v_<param>`` per parameter block (an input drawn
from that parameter's domain, so every sample has its own direction from the run's one
generator), and the loss ``g·v = Σ_p <∂L/∂p, v_p>`` written as the exact gradient program. Its
gradient with respect to the parameters is the Hessian-vector product ``H v``; everything
first-order verification does (oracle, rounding bound, kinks, comparer, causes, report) applies
to it unchanged. The code under test is torch's double backward:

- ``torch``: symgrad's own torch program of the model, ``g = autograd.grad(L, params,
  create_graph=True)``, then autograd of ``Σ g·v`` (``hvp_loss``);
- ``torch_fn``: the user's per-sample torch code, the same way (``double_backward``).

>>> import sympy as sp, symgrad as sg
>>> from symgrad.tensor.front import to_program
>>> w, x = sp.symbols("w x")
>>> m = to_program(sg.Model("cube", w**3 * x, params=[w], inputs=[x]))
>>> h, _ = second_order(m)
>>> [b.name for b in h.blocks]
['w', 'x', 'v_w']
>>> float(sg.exact_at(h, {"w": 2, "x": 1, "v_w": 1})["d/dw"])   # d²(w³)/dw² = 6 w
12.0
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np
import torch

from . import tensor as st
from .backends import torch as torch_backend
from .errors import SymgradError
from .result import Result
from .result_text import HVP_PREFIX, HVP_VALUE
from .tensor.interpret import evaluate
from .tensor.model import TensorBlock, TensorModel


def direction_name(block: str, taken: Sequence[str]) -> str:
    """The direction block's name for parameter ``block``: ``v_<block>`` (more underscores if
    a block of the model already has that name)."""
    name = f"v_{block}"
    while name in taken:
        name = "v_" + name
    return name


def second_order(model, torch_fn: Callable | None = None, module=None):
    """The HVP model of ``model`` (cached on it) and, given one, the user's torch code as
    its double backward.

    Arguments:
        model: a ``TensorModel`` (a plain model as its program: ``symgrad.verify.as_program``).
        torch_fn: the user's per-sample torch code of ``model`` (``fn(**blocks) -> loss``).
        module: refused here: ``sg.verify`` passes a module as its torch_fn
            (``symgrad.modules.module_torch_fn``: the eager path, matched by parameter name).
    Returns:
        ``(hvp_model, hvp_fn)``: a ``TensorModel`` whose verified gradient is the
        Hessian-vector product, and ``double_backward(torch_fn)`` (None without a torch_fn).
    """
    if module is not None:
        raise SymgradError("second_order: pass the module as torch_fn (sg.verify(model, "
                           "module=..., order=2) does: symgrad.modules.module_torch_fn)")
    if torch_fn is not None:
        torch_backend.check_torch_fn(torch_fn, [b.name for b in model.blocks])
    derived, names = _built(model)
    fn = None
    if torch_fn is not None:
        fn = double_backward(torch_fn, [b.name for b in model.blocks],
                             [b.name for b in model.param_blocks], names)
    return derived, fn


def _built(model: TensorModel) -> tuple:
    """(HVP model, direction block names), built once per model."""
    return model._cached("hvp", lambda: _tensor_hvp(model))


def with_directions(model, at: dict | None, seed: int) -> dict | None:
    """``at=`` for the HVP model: the given samples of ``model``'s blocks, and for each
    direction block not given, one direction per sample drawn from its parameter's domain
    (seeded by the run's seed).

    Arguments:
        model: the model verified at order 2.
        at: block name (or symbol) -> values, as ``sg.verify(at=...)`` takes them; or None.
        seed: the run's seed.
    Returns:
        ``at`` with every ``v_<param>`` block (None when ``at`` is None).
    """
    if at is None or not isinstance(at, dict):
        return at
    derived, names = _built(model)
    given = {getattr(k, "name", k): v for k, v in at.items()}
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    out = dict(given)
    for b, name in zip(model.param_blocks, names):
        if name in given or b.name not in given:
            continue
        shape = np.shape(given[b.name])
        lead = () if shape == tuple(b.shape) else shape[:1]
        out[name] = np.asarray(b.domain.sample(rng, (*lead, *b.shape)), dtype=np.float64)
    return out


def _dot(loss: torch.Tensor, params: list, directions: list, reduce: Callable) -> torch.Tensor:
    """Σ_p reduce(∂loss/∂p ∘ v_p) with the first backward kept differentiable (torch's double
    backward); a gradient that does not depend on the parameters still returns a graph."""
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise SymgradError("order=2: the loss does not depend on the parameters (detached, a "
                           "constant, or computed under torch.no_grad); return the loss tensor")
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    out = reduce(params[0] * 0)  # keeps a graph where the gradient is constant (H = 0)
    for g, v in zip(grads, directions):
        if g is not None:
            out = out + reduce(g * v)
    return out


def double_backward(fn: Callable, blocks: list[str], params: list[str],
                    directions: list[str]) -> Callable:
    """The user's per-sample torch code under double backward: ``hvp_fn(**blocks, **v)``
    returns ``Σ <∂fn/∂p, v_p>`` with the first backward kept differentiable, so its gradient
    (what symgrad's torch_fn runner takes) is torch's Hessian-vector product."""
    def hvp_fn(**given):
        loss = fn(**{k: given[k] for k in blocks})
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            loss = loss.reshape(())
        return _dot(loss, [given[p] for p in params], [given[v] for v in directions],
                    torch.sum)
    hvp_fn.__name__ = f"{getattr(fn, '__name__', type(fn).__name__)} (double backward)"
    hvp_fn.first_order = fn
    return hvp_fn


def _tensor_hvp(model: TensorModel) -> tuple[TensorModel, list[str]]:
    """A ``TensorModel`` whose loss is ``Σ_p sum(g_p ∘ v_p)`` over the exact gradient program
    (``tensor.derive.gradient``); its gradient is again a program: the exact HVP. The model's
    textbook composition and its formula as written (``front.to_program`` sets them for a
    plain ``sg.Model``) become the HVP's, over the same leaves and directions: a user's
    torch_fn keeps the larger allowance of the two, and the oracle checks the stable rewrite to
    second order."""
    taken = [b.name for b in model.blocks]
    names, directions = [], []
    for b in model.param_blocks:
        name = direction_name(b.name, taken + names)
        names.append(name)
        directions.append(st.input(name, b.shape, b.domain))
    derived = _dot_model(model, directions, f"{model.name}_hvp", names)
    for view in ("textbook_program", "written_program"):
        program = getattr(model, view, None)
        if program is not None:
            setattr(derived, view, _dot_model(program, directions, f"{program.name}_hvp", names,
                                              blocks=derived.blocks))
    derived.torch_loss = lambda table, leaves, m=model: hvp_loss(m, names, table, leaves)
    derived.order = 2
    return derived, names


def _dot_model(model: TensorModel, directions: list, name: str, names: list[str], *,
               blocks: tuple | None = None) -> TensorModel:
    """The tensor model of ``Σ_p sum(g_p ∘ v_p)`` over ``model``'s gradient program, its blocks
    in the order parameters, inputs, directions (or ``blocks``: another view's, same leaves)."""
    terms = [st.sum_(st.map_(st.X[0] * st.X[1], g, v))
             for g, v in zip(model.gradient.grads, directions)]
    while len(terms) > 1:  # a balanced sum of the blocks' scalars
        terms = [st.map_(st.X[0] + st.X[1], *terms[i:i + 2]) if i + 1 < len(terms)
                 else terms[i] for i in range(0, len(terms), 2)]
    derived = TensorModel(name, terms[0], params=[b.node for b in model.param_blocks],
                          description=f"Hessian-vector product of {model.name}")
    if blocks is not None:  # a view of the same function: the same leaves, the same blocks
        derived.blocks = blocks
        return derived
    order = [b.name for b in model.blocks] + names  # the parameters', inputs', then v's order
    kept = {b.name for b in derived.blocks}  # an input H v does not read stays a block
    unread = [TensorBlock(b.name, b.shape, b.domain, False, b.node)
              for b in model.input_blocks if b.name not in kept]
    derived.blocks = tuple(sorted(derived.blocks + tuple(unread),
                                  key=lambda b: order.index(b.name)))
    return derived


def hvp_loss(model: TensorModel, directions: list[str], table, leaves: dict) -> torch.Tensor:
    """Torch's double backward of a tensor model's own torch program on a batch: per sample
    ``Σ <∂L/∂p, v_p>`` with ``g = autograd.grad(L, params, create_graph=True)``."""
    (loss,) = evaluate([model.loss], table, leaves)
    n = loss.shape[0]
    return _dot(loss.sum(), [leaves[b.name] for b in model.param_blocks],
                [leaves[v] for v in directions], lambda t: t.reshape(n, -1).sum(1))


class HvpOutputs(Sequence):
    """A result's output names at order 2: ``g·v``, then ``Hv:<entry>`` per parameter entry."""

    def __init__(self, first: Sequence[str], rename: Callable[[str], str] = str) -> None:
        self.first, self.rename = first, rename

    def __len__(self) -> int:
        return len(self.first)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        return relabel_output(self.rename(self.first[k]))


def relabel_output(name: str) -> str:
    """``value`` -> ``g·v``; ``d/d<entry>`` -> ``Hv:<entry>``."""
    if name == "value":
        return HVP_VALUE
    return HVP_PREFIX + name[3:] if name.startswith("d/d") else name


def relabel(result: Result, model, names: tuple[Callable, dict] | None = None) -> Result:
    """The HVP model's first-order result as the order-2 result of ``model``: outputs and
    findings named as Hessian-vector products, the run's config with ``order=2``; ``names``
    (a module's: ``modules.module_torch_fn``): output name -> the module's, block -> label."""
    rename, labels = names or (str, {})
    result.outputs = (HvpOutputs(result.outputs, rename)
                      if not isinstance(result.outputs, list)
                      else [relabel_output(rename(o)) for o in result.outputs])
    result.blocks = [(labels.get(n, n), *rest) for n, *rest in result.blocks]
    for field in ("failures", "precision_losses", "worst", "kinks", "undecided"):
        setattr(result, field, [replace(f, output=relabel_output(rename(f.output)))
                                for f in getattr(result, field)])
    result.config = replace(result.config, order=2)
    result.model = model.name
    result._memo.clear()
    return result
