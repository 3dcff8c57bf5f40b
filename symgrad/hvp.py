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
from torch.autograd.function import once_differentiable
from torch.utils._pytree import tree_leaves

from . import tensor as st
from .backends import torch as torch_backend
from .capture.export import arg_names, leaf_names
from .compare import FAILING
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


# ------------------------------------------------- which custom Function a failure flows through
def upstream_functions(out, leaves: dict[str, torch.Tensor]) -> dict[str, set[str]]:
    """Each custom ``torch.autograd.Function`` on the autograd graph of ``out`` (by its class
    name), with the names of the ``leaves`` whose gradient flows through its backward.

    Arguments:
        out: the user's output (a tensor or a structure of them), built with grad on.
        leaves: name -> the leaf tensor (requires_grad) it was computed from.
    Returns:
        Function class name -> leaf names upstream of it ({} where none is called).

    >>> class Twice(torch.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         return 2 * x
    ...     @staticmethod
    ...     def backward(ctx, g):
    ...         return 2 * g
    >>> w, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    >>> upstream_functions((Twice.apply(w) + b).sum(), {"w": w, "b": b})
    {'Twice': {'w'}}
    """
    names = {id(t): n for n, t in leaves.items()}
    outs = [t for t in (out if isinstance(out, (tuple, list)) else [out])
            if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    found: dict[str, set[str]] = {}
    for node in _graph([t.grad_fn for t in outs]):
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            found.setdefault(type(node).__name__.removesuffix("Backward"), set()).update(
                names[id(n.variable)] for n in _graph([node])
                if id(getattr(n, "variable", None)) in names)
    return found


def _graph(roots: list):
    """Every autograd node reachable from ``roots``, each once."""
    seen, stack = set(), list(roots)
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(n for n, _ in node.next_functions)


def failing_hvp_blocks(result: Result) -> set[str] | None:
    """The blocks with a failing Hessian-vector product entry in the user's code's
    comparisons (``torch_fn``, its float64 rule check too; every entry's status, not the
    finding lists' worst few); None where none fails, ``g·v`` (the first order) fails too, or
    a status was reduced away."""
    failing: set[str] = set()
    for name, comp in result.comparisons.items():
        if not name.startswith("torch_fn"):
            continue
        status = getattr(comp, "status", None)
        if status is None or np.ndim(status) != 2:
            return None
        bad = np.isin(status, FAILING).any(axis=0)
        if bad[0]:
            return None
        failing |= {block for block, a, b in result.blocks if bad[a:b].any()}
    return failing or None


def function_note(upstream: dict[str, set[str]], failing: set[str] | None) -> str | None:
    """One line naming the custom Function whose backward every failing Hessian-vector
    product flows through (None if no Function holds them all): at order 2 autograd
    differentiates that backward again.

    >>> function_note({"TanhDet": {"w", "b"}}, {"w"})[:70]
    'every failing Hessian-vector product (Hv:w) flows through the custom a'
    """
    holders = [f for f, got in upstream.items() if failing and failing <= got]
    if not holders:
        return None
    named = ", ".join(HVP_PREFIX + b for b in sorted(failing))
    return (f"every failing Hessian-vector product ({named}) flows through the custom "
            f"autograd.Function '{min(holders, key=lambda f: len(upstream[f]))}': at order 2 "
            "autograd "
            "differentiates its backward again (its forward is what was checked), and a backward "
            "right at order 1 can be wrong there (a saved tensor detached or computed under "
            "no_grad, a value taken out of autograd): check that backward first")


def with_function_note(result: Result, model: TensorModel, torch_fn: Callable | None
                       ) -> Result:
    """``result`` (order 2, the user's ``torch_fn``) with ``function_note`` added, read from
    one eager run of ``torch_fn`` at the first failing sample (float64); unchanged where no
    Function holds every failure, or that run raises (a note, never a second error)."""
    failing = failing_hvp_blocks(result) if torch_fn is not None else None
    point = next((f.point for f in result.failures if f.backend.startswith("torch_fn")), None)
    if not failing or point is None:
        return result
    try:
        leaves = {b.name: torch.tensor(np.reshape(point[b.name], b.shape),
                                       dtype=torch.int64 if b.node.integer else torch.float64,
                                       requires_grad=not b.node.integer)
                  for b in model.blocks}
        with torch.enable_grad():
            out = torch_fn(**leaves)
        labels = (getattr(torch_fn, "names", None) or (None, {}))[1]  # a module's own names
        note = function_note({f: {labels.get(n, n) for n in got} for f, got in
                              upstream_functions(out, leaves).items()}, failing)
    except Exception:  # noqa: BLE001 - the verdict stands without the note
        return result
    if note:
        result.notes.append(note)
    return result


_ONCE = once_differentiable(lambda ctx, g: g).__code__  # every decorated backward's wrapper


def once_differentiable_function(func: Callable, args: tuple) -> str | None:
    """The name of a custom Function on one eager run's autograd graph of ``func(*args)``
    whose backward is ``@once_differentiable`` (None: none is)."""
    try:
        with torch.enable_grad():
            out = func(*args)
    except Exception:  # noqa: BLE001 - a note, never a second error: the run itself went fine
        return None
    todo = [t.grad_fn for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
    seen: set[int] = set()
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        cls = getattr(node, "_forward_cls", None)
        if getattr(getattr(cls, "backward", None), "__code__", None) is _ONCE:
            return cls.__name__
        todo += [f for f, _ in node.next_functions]
    return None


def function_through(func: Callable, args: tuple, result) -> str | None:
    """``function_note`` of one eager run of ``func(*args)`` (``sg.gradgradcheck``'s function
    or module, its arguments' own names): the custom Function every failing Hessian-vector
    product of ``result`` flows through (None: none holds them all)."""
    leaves = {n: a for n, a in zip(leaf_names(args, arg_names(func, len(args))),
                                   tree_leaves(list(args)))
              if isinstance(a, torch.Tensor) and a.requires_grad}
    if isinstance(func, torch.nn.Module):
        leaves.update(func.named_parameters())
    try:
        with torch.enable_grad():
            out = func(*args)
    except Exception:  # noqa: BLE001 - a note, never a second error: the run itself went fine
        return None
    return function_note(upstream_functions(out, leaves), failing_hvp_blocks(result))
