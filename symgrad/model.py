"""``Model``: a scalar loss, its parameters and its inputs with sampling domains (its blocks:
``sg.matrix``, ``symgrad.entries``).

>>> import sympy as sp, symgrad as sg
>>> x, w = sp.symbols("x w")
>>> m = sg.Model("square", (w * x) ** 2, params=[w], inputs={x: sg.Uniform(-1, 1)})
>>> [b.name for b in m.blocks]
['w', 'x']
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import sympy as sp

from .codegen import unsupported_functions
from .domains import Domain, as_domain
from .entries import ENTRY
from .errors import SymgradError, checked_keywords
from .graph import Graph
from .stable import Rewriter
from .tensor.front import to_program
from .tensor.model import ModelBase, TensorModel


@dataclass(frozen=True)
class Block:
    """A named group of scalar leaves: a scalar, a vector or a matrix."""

    name: str
    shape: tuple[int, ...]  # () scalar, (n,) vector, (r, c) matrix
    symbols: tuple[sp.Symbol, ...]  # the user's symbols, row-major
    domain: Domain
    is_param: bool

    def entry_names(self) -> list[str]:
        if not self.shape:
            return [self.name]
        return [f"{self.name}[{','.join(map(str, idx))}]" for idx in np.ndindex(*self.shape)]


@checked_keywords  # a misspelled keyword: one line naming it and the one meant
class Model(ModelBase):
    """A scalar loss as a function of parameters and inputs, written once in sympy.

    Arguments:
        name: a short identifier used in reports.
        loss: a scalar sympy expression (built from sympy and ``sg.ops``); a 1x1 Matrix is taken
            as its single entry.
        params: the symbols to differentiate with respect to: symbols or ``sg.matrix`` blocks,
            or a mapping of those to sampling domains (default ``sg.Normal()``).
        inputs: mapping of input symbols / blocks to sampling domains (or a list: standard
            normal).
        description: one line for ``symgrad list`` and reports.
        reference: optional native torch implementation (``torch_fn``) built-in models carry.
        allow_unused: a parameter may be absent from the loss, silently (its exact gradient
            is identically 0: a linear parameter of a Hessian-vector model, or a check that a
            ``torch_fn`` gives 0 there). Without it, such a parameter (a whole block: some
            entries of a matrix may be absent) is verified all the same but warned about in
            one line (``UserWarning``): it is most often a typo.
    Returns:
        A validated model; every free symbol is a parameter or an input.

    >>> import sympy as sp, symgrad as sg
    >>> w = sp.Symbol("w")
    >>> sg.Model("bad", w * sp.Symbol("q"), params=[w])
    Traceback (most recent call last):
    ...
    symgrad.errors.SymgradError: model 'bad': free symbol 'q' is neither a parameter nor an input; add it to params=[...] or inputs={...}
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as seen:
    ...     m = sg.Model("m", w**2, params=[w, sp.Symbol("b")])
    >>> print(seen[0].message)
    parameter 'b' does not appear in the loss of model 'm'; remove it from params= or use it (or pass allow_unused=True: its gradient is identically 0)
    """

    def __init__(self, name: str, loss, *, params, inputs=None, description: str = "",
                 reference=None, allow_unused: bool = False) -> None:
        self.name = name
        self.description = description
        self.reference = reference
        self.loss = _scalar_loss(name, loss)
        param_blocks = _blocks(name, params, is_param=True)
        input_blocks = _blocks(name, inputs or {}, is_param=False)
        if not param_blocks:
            raise SymgradError(f"model {name!r}: params is empty; name at least one symbol to "
                               "differentiate with respect to")
        self.blocks: tuple[Block, ...] = tuple(param_blocks + input_blocks)
        _check_unique(name, self.blocks)
        # Leaves are made real (d|w|/dw = sign(w), not re/im terms); names stay the user's.
        self.real: dict[sp.Symbol, sp.Symbol] = {
            s: sp.Symbol(s.name, real=True) for b in self.blocks for s in b.symbols}
        self._changed = {k: v for k, v in self.real.items() if k != v}
        self._renamed: dict = {}  # expr -> its real twin: the program, its textbook and its
        #   written views rename the same steps (each an xreplace re-evaluating Max / sqrt)
        # the executed program: plain-sympy unstable patterns in stable forms (symgrad.stable);
        # display_graph keeps the user's formula
        self.graph = Graph.from_expr(self.loss, rename=self._rename, rewrite=Rewriter())
        known = set(self.real.values())
        for leaf in sorted(self.graph.leaves, key=str):
            if leaf not in known:
                raise SymgradError(f"model {name!r}: free symbol '{leaf}' is neither a parameter "
                                   "nor an input; add it to params=[...] or inputs={...}")
        if not allow_unused:
            _warn_unused(name, self.graph.leaves, self.param_blocks)
        for node in self.graph.nodes:
            bad = unsupported_functions(node.expr)
            if bad:
                raise SymgradError(f"model {name!r}: not supported: {', '.join(sorted(bad))} "
                                   f"(in step '{node.name}'); rewrite it with supported functions "
                                   "(exp, log, tanh, erf, Abs, Max, Piecewise, ...)")
        self._cache: dict = {}
        # names whose trailing number is a layer's (or a head's) that symgrad itself numbers:
        # the zoo sets it (simplenet's W1); explain and reports print W1 as W^(1), any other x1
        # as x_1 (``symgrad.present.names.layer_names``)
        self.layer_names: frozenset[str] = frozenset()

    def as_program(self) -> TensorModel:
        """The model as the tensor program ``sg.verify`` verifies (``symgrad.tensor.front``:
        one shape-() map node per step), built once and cached: the program caches its own
        gradient, so verifying the model again skips both. Every model type has this method
        (a ``TensorModel`` is its own program), so no caller asks which type it holds."""
        return self._cached("tensor_program", lambda: to_program(self))

    @property
    def display_graph(self) -> Graph:
        """The program with each op's textbook form (e.g. BCE of a sigmoid, not softplus)."""
        return self._cached("display_graph", lambda: Graph.from_expr(
            self.loss, rename=self._rename, view="display"))

    @property
    def written_graph(self) -> Graph:
        """The program as written, without ``symgrad.stable``'s rewrites (ops keep their own
        stable forms): what the certified oracle evaluates, so every run checks the rewritten
        program against the formula as written. ``graph`` itself when nothing was rewritten."""
        if not self.graph.rewrites:
            return self.graph
        return self._cached("written_graph", lambda: Graph.from_expr(self.loss,
                                                                    rename=self._rename))

    def _rename(self, expr: sp.Expr) -> sp.Expr:
        """The user's symbols -> their real twins (a no-op for sg.matrix's real symbols);
        each expression renamed once per model."""
        if not self._changed:
            return expr
        got = self._renamed.get(expr)
        if got is None:
            got = self._renamed[expr] = expr.xreplace(self._changed)
        return got

    # ----- views of the blocks (param_blocks, input_blocks: ModelBase's)
    @property
    def params(self) -> list[sp.Symbol]:
        """Real leaf symbols of the parameters, in entry order."""
        return [self.real[s] for b in self.param_blocks for s in b.symbols]

    @property
    def leaves(self) -> list[sp.Symbol]:
        """Real leaf symbols of all blocks (parameters first), in entry order."""
        return [self.real[s] for b in self.blocks for s in b.symbols]

    @property
    def entries(self) -> list[str]:
        """Readable names of the gradient entries: ``w``, ``W1[0,3]``…"""
        return [e for b in self.param_blocks for e in b.entry_names()]

    def __repr__(self) -> str:
        return (f"Model({self.name!r}, params={[b.name for b in self.param_blocks]}, "
                f"inputs={[b.name for b in self.input_blocks]}, "
                f"steps={len(self.graph.nodes)})")


def _scalar_loss(name: str, loss) -> sp.Expr:
    if isinstance(loss, sp.MatrixBase):
        if loss.shape == (1, 1):
            loss = loss[0, 0]
        else:
            raise SymgradError(f"model {name!r}: the loss must be a scalar, got a Matrix of shape "
                               f"{loss.shape}; reduce it, e.g. with sum(M) or M[0, 0]")
    if isinstance(loss, (list, tuple, np.ndarray)):
        raise SymgradError(f"model {name!r}: the loss must be a scalar sympy expression, got a "
                           f"{type(loss).__name__} of length {len(loss)}; reduce it to a scalar")
    try:
        loss = sp.sympify(loss)
    except (sp.SympifyError, TypeError):
        raise SymgradError(f"model {name!r}: the loss must be a sympy expression, got "
                           f"{type(loss).__name__}") from None
    if not isinstance(loss, sp.Expr) or isinstance(loss, sp.MatrixBase):
        raise SymgradError(f"model {name!r}: the loss must be a scalar sympy expression, got "
                           f"{type(loss).__name__}")
    if not loss.free_symbols:
        raise SymgradError(f"model {name!r}: the loss {loss} is a constant; it must depend on "
                           "the parameters")
    return loss


def _blocks(model: str, spec, *, is_param: bool) -> list[Block]:
    kind = "params" if is_param else "inputs"
    if isinstance(spec, Mapping):
        items = list(spec.items())
    elif isinstance(spec, (sp.Basic, sp.MatrixBase)):
        items = [(spec, None)]
    elif isinstance(spec, Iterable) and not isinstance(spec, str):
        items = [(s, None) for s in spec]
    else:
        raise SymgradError(f"model {model!r}: {kind} must be a list of symbols / sg.matrix blocks"
                           f" or a mapping of them to domains, got {spec!r}")
    blocks = []
    for key, domain in items:
        domain = as_domain(domain, what=f"model {model!r}: {kind}[{key}]")
        blocks.append(_block(model, kind, key, domain, is_param))
    return blocks


def _block(model: str, kind: str, key, domain: Domain, is_param: bool) -> Block:
    if isinstance(key, sp.Symbol):
        if not key.name.isidentifier():
            raise SymgradError(f"model {model!r}: {kind} symbol {key.name!r} is not a Python "
                               "identifier; torch_fn matches arguments by name, so rename it")
        return Block(key.name, (), (key,), domain, is_param)
    if isinstance(key, sp.MatrixBase):
        parsed = [ENTRY.match(getattr(s, "name", "")) for s in key]
        bases = {m.group("base") for m in parsed if m}
        if len(bases) != 1 or not all(parsed):
            raise SymgradError(f"model {model!r}: {kind} block {key} is not an sg.matrix; build "
                               "blocks with sg.matrix(name, rows, cols)")
        base = bases.pop()
        ndim = len(parsed[0].group("idx").split(","))
        shape = (key.shape[0],) if (ndim == 1 and key.shape[1] == 1) else tuple(key.shape)
        return Block(base, shape, tuple(key), domain, is_param)
    raise SymgradError(f"model {model!r}: {kind} entry {key!r} is not a sympy Symbol or an "
                       "sg.matrix block")


def _check_unique(model: str, blocks: Sequence[Block]) -> None:
    seen: dict[str, Block] = {}
    for b in blocks:
        if b.name in seen:
            both = "a parameter and an input" if seen[b.name].is_param != b.is_param else "twice"
            raise SymgradError(f"model {model!r}: '{b.name}' is given {both}; each symbol is "
                               "either a parameter or an input, once")
        seen[b.name] = b
    names = [s.name for b in blocks for s in b.symbols]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise SymgradError(f"model {model!r}: symbol name(s) {dup} used by more than one block")


def _warn_unused(model: str, leaves: Iterable[sp.Symbol], params: Sequence[Block]) -> None:
    """One warning line naming each parameter none of whose symbols is a leaf of the loss's
    program (``Graph.leaves``: the loss through its named steps; matched by name, as the
    free-symbol check does: ``w`` and its real twin are one)."""
    used = {s.name for s in leaves}
    unused = [b.name for b in params if not any(s.name in used for s in b.symbols)]
    if unused:
        one = len(unused) == 1
        which = (f"parameter {unused[0]!r} does" if one else
                 f"parameters {', '.join(map(repr, unused))} do")
        it = "it" if one else "them"
        zero = "its gradient is" if one else "their gradients are"
        warnings.warn(f"{which} not appear in the loss of model {model!r}; remove {it} from "
                      f"params= or use {it} (or pass allow_unused=True: {zero} identically 0)",
                      UserWarning, stacklevel=3)
