"""``TensorModel``: a scalar loss node of a tensor program, its parameter and input blocks.

>>> import symgrad.tensor as st
>>> W, x = st.param("W", (2, 3)), st.input("x", (3,))
>>> m = TensorModel("lin", st.sum_(st.tanh(st.einsum("ij,j->i", W, x))))
>>> [b.name for b in m.blocks], m.n_parameters
(['W', 'x'], 6)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..domains import Domain, Integers, round_to
from ..errors import SymgradError, checked_keywords
from .derive import Gradient, gradient
from .program import Node, topological


@dataclass(frozen=True)
class TensorBlock:
    """A parameter or input block of a tensor model (what ``symgrad.model.Block`` is for the
    scalar program, without one symbol per entry)."""

    name: str
    shape: tuple[int, ...]
    domain: Domain
    is_param: bool
    node: Node

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    def entry_names(self) -> list[str]:
        if not self.shape:
            return [self.name]
        return [self.entry(i) for i in range(self.size)]

    def entry(self, flat: int) -> str:
        if not self.shape:
            return self.name
        idx = np.unravel_index(flat, self.shape)
        return f"{self.name}[{','.join(str(int(i)) for i in idx)}]"


class EntryNames(Sequence):
    """Readable names of a model's gradient entries, computed on demand (GPT-2 has 163M)."""

    def __init__(self, blocks: Sequence[TensorBlock], prefix: str = "") -> None:
        self.blocks = list(blocks)
        self.prefix = prefix
        self.starts = np.cumsum([0] + [b.size for b in self.blocks])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        k = int(k) % len(self) if k < 0 else int(k)
        i = int(np.searchsorted(self.starts, k, side="right")) - 1
        return self.prefix + self.blocks[i].entry(k - int(self.starts[i]))


class Outputs(Sequence):
    """["value", "d/d<entry>", ...] without building the list."""

    def __init__(self, blocks: Sequence[TensorBlock]) -> None:
        self.entries = EntryNames(blocks, "d/d")

    def __len__(self) -> int:
        return 1 + len(self.entries)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        return "value" if int(k) == 0 else self.entries[int(k) - 1]


class ModelBase:
    """What every model type shares (``sg.Model``, ``TensorModel``): ``blocks`` (parameters
    first, then inputs), their two views and ``draw``, a ``_cache`` dropped when pickled, and
    the one protocol every caller reads instead of asking which type it holds:
    ``as_program()``, the tensor program ``sg.verify`` verifies (each type defines it; a
    ``TensorModel`` is its own)."""

    blocks: tuple
    _cache: dict

    @property
    def param_blocks(self) -> tuple:
        return tuple(b for b in self.blocks if b.is_param)

    @property
    def input_blocks(self) -> tuple:
        return tuple(b for b in self.blocks if not b.is_param)

    def draw(self, n: int, rng: np.random.Generator, dtype: str) -> dict[str, np.ndarray]:
        """``n`` samples of every block, shape (n, *shape), rounded to ``dtype`` (integer
        blocks as int64)."""
        out = {}
        for b in self.blocks:
            values = np.asarray(b.domain.sample(rng, (n, *b.shape)), dtype=np.float64)
            out[b.name] = values.astype(np.int64) if b.domain.integer else round_to(values, dtype)
        return out

    def _cached(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()``, made once per model and kept in its ``_cache`` under ``key``."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def __getstate__(self) -> dict:
        """Pickled without its caches (compiled views hold ball-arithmetic constants that do
        not pickle): a Dask worker derives the model again once and keeps it."""
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state


@checked_keywords  # a misspelled keyword: one line naming it and the one meant
class TensorModel(ModelBase):
    """A model held as a tensor program.

    Arguments:
        name: a short identifier used in reports.
        loss: a scalar node (shape ``()``) built with ``symgrad.tensor`` ops.
        description: one line for reports.
        reference: optional native torch implementation (``torch_fn(**blocks)`` per sample).
        params: optional explicit order of the parameter leaves (default: order of first use).
    Returns:
        A validated model; ``sg.verify`` runs it through the tensor views.
    """

    def __init__(self, name: str, loss: Node, *, description: str = "", reference=None,
                 params: Sequence[Node] | None = None) -> None:
        if not isinstance(loss, Node) or loss.shape != ():
            shape = getattr(loss, "shape", type(loss).__name__)
            raise SymgradError(f"model {name!r}: the loss must be a scalar tensor node (shape "
                               f"()), got {shape}; reduce it with st.sum_ or st.mean")
        self.name = name
        self.description = description
        self.reference = reference
        self.loss = loss
        nodes = topological([loss])
        found = [n for n in nodes if n.op == "param"]
        if params is not None:
            missing = [p.name for p in found if p not in params]
            if missing:
                raise SymgradError(f"model {name!r}: parameters {missing} are used but not listed")
            found = list(params)
        inputs = [n for n in nodes if n.op == "input"]
        _index_ranges(nodes)
        open_ids = [i.name for i in inputs if i.attrs["domain"] is None]
        if open_ids:
            raise SymgradError(f"model {name!r}: integer input(s) {open_ids} have no domain and "
                               "index nothing (no take / onehot); give each one, e.g. "
                               "st.input(name, shape, sg.Integers(0, 9))")
        self.blocks: tuple[TensorBlock, ...] = tuple(
            [TensorBlock(p.name, p.shape, p.attrs["domain"], True, p) for p in found]
            + [TensorBlock(i.name, i.shape, i.attrs["domain"], False, i) for i in inputs])
        names = [b.name for b in self.blocks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise SymgradError(f"model {name!r}: block name(s) {dup} used by more than one leaf")
        if not found:
            raise SymgradError(f"model {name!r}: no parameters; build at least one st.param")
        self.n_nodes = len(nodes)
        self._cache: dict = {}
        # the same function in its textbook composition (``front.to_program`` sets it from a
        # scalar model's display forms): a user's torch_fn is allowed the larger rounding
        self.textbook_program: TensorModel | None = None
        # the same function as the user wrote it, where the program runs a stable rewrite of it
        # (``front.to_program``): the oracle evaluates this one, so every run checks the rewrite
        self.written_program: TensorModel | None = None
        self.rewrites: tuple[str, ...] = ()  # the stable rules it runs (symgrad.stable.RULES)
        # names printed with a layer superscript (W1 as W^(1)); ``front.to_program`` copies a
        # scalar model's ``Model.layer_names``
        self.layer_names: frozenset[str] = frozenset()
        # a captured module's casts to a lower-precision float than its run's, as
        # ``causes.Context.lowered`` reads them ("to() gave float32 at file:line"; capture.walk)
        self.lowered: tuple[str, ...] = ()

    @property
    def n_parameters(self) -> int:
        return sum(b.size for b in self.param_blocks)

    @property
    def entries(self) -> EntryNames:
        return EntryNames(self.param_blocks)

    def as_program(self) -> TensorModel:
        """The model as the tensor program ``sg.verify`` verifies: a tensor program is its own
        (the one protocol of every model type: ``sg.Model.as_program`` builds its program)."""
        return self

    @property
    def gradient(self) -> Gradient:
        """The exact gradient program (derived once, cached)."""
        params = tuple(b.node for b in self.param_blocks)
        return self._cached("gradient", lambda: Gradient(self.loss, params,
                                                        tuple(gradient(self.loss, params))))

    @property
    def display_graph(self):
        """The scalar step listing exists only for a plain ``sg.Model``: a clear error here."""
        raise SymgradError(f"model {self.name!r} is a tensor program: it has no scalar step "
                           "listing; `sg.explain(model)` explains its program, `symgrad verify` "
                           "(--json) verifies it")

    def __repr__(self) -> str:
        return (f"TensorModel({self.name!r}, {self.n_parameters} parameters in "
                f"{len(self.param_blocks)} blocks, {self.n_nodes} nodes)")


# what a model argument accepts, for the one-line refusal of anything else
ACCEPTED_MODELS = "an sg.Model (a sympy loss) or a symgrad.tensor TensorModel"


def is_model(obj: object) -> bool:
    """Whether ``obj`` is a model (``sg.Model``, ``TensorModel``: a ``ModelBase``, which gives
    the one protocol, ``as_program()``); a class is not (it is a model's factory).

    >>> import sympy as sp, symgrad as sg
    >>> w = sp.Symbol("w")
    >>> is_model(sg.Model("sq", w ** 2, params=[w])), is_model(sg.Model), is_model("sq")
    (True, False, False)
    """
    return isinstance(obj, ModelBase)


def program_of(model: object) -> TensorModel:
    """The tensor program of any model, ``model.as_program()``: a ``TensorModel`` is its own, a
    plain model's is ``symgrad.tensor.front.to_program(model)``, built once and cached on the
    model (``symgrad.verify.as_program`` is this, so verify and explain share it).

    Arguments:
        model: an ``sg.Model`` or a ``TensorModel``.
    Returns:
        its ``TensorModel``; anything else is refused in one line naming what was passed.

    >>> import sympy as sp, symgrad as sg
    >>> w = sp.Symbol("w")
    >>> m = sg.Model("sq", w ** 2, params=[w])
    >>> program_of(m) is program_of(m), program_of(program_of(m)) is program_of(m)
    (True, True)
    >>> program_of([w])
    Traceback (most recent call last):
    ...
    symgrad.errors.SymgradError: model: a list is not a model; pass an sg.Model (a sympy loss) or a symgrad.tensor TensorModel (a built-in one: zoo.get(name))
    """
    if not is_model(model):
        what = f"the class {model.__name__}" if isinstance(model, type) else \
            f"a {type(model).__name__}"
        torch_code = callable(model) and not isinstance(model, type)  # a module, a function
        raise SymgradError(f"model: {what} is not a model; pass {ACCEPTED_MODELS} (a built-in "
                           "one: zoo.get(name))" + (
                               "; torch code is checked by sg.verify(module=m, inputs=x) or "
                               "sg.gradcheck(fn, inputs), and its program is "
                               "sg.capture(m, inputs).model" if torch_code else ""))
    return model.as_program()


def _index_ranges(nodes: list[Node]) -> None:
    """An integer input built without a domain (``st.input(..., integer=True)``) draws ids in
    0..V-1 of the smallest table it indexes (take: the table's rows, onehot: its size)."""
    sizes: dict[int, int] = {}
    for n in nodes:
        if n.op in ("take", "onehot") and n.args[-1].attrs.get("open_range"):
            size = n.args[0].shape[0] if n.op == "take" else int(n.attrs["size"])
            ids = n.args[-1]
            sizes[ids.id] = min(size, sizes.get(ids.id, size))
            ids.attrs["domain"] = Integers(0, sizes[ids.id] - 1)
