"""Views of a tensor model: numpy (the derived gradient program on whole arrays), torch
(autograd of the forward program on a device and dtype: the backend being verified) and the
oracle (the derived program under a high-precision table). Each returns a (N, 1 + K) float64
array: the loss, then every gradient entry in block order.

>>> import numpy as np, symgrad.tensor as st
>>> from symgrad.tensor.model import TensorModel
>>> W = st.param("W", (2,))
>>> m = TensorModel("sq", st.sum_(W * W))
>>> numpy_view(m, {"W": np.array([[1.0, 2.0]])}, "float64").tolist()
[[5.0, 2.0, 4.0]]
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from ..backends.flat import flat_empty
from ..backends.torch_grads import backward_into
from ..heap import give_back, unless_kept
from ..backends.torch import exact_math
from ..config import LARGE_MODEL_ENTRIES, VerifyConfig
from ..precise import ARB_OPS, DDOps
from ..precise.arbdomain import DomainWatch, watched
from ..precise.certify import CertifyConfig, certify, escalate, recertify
from ..precise.ozaki import kept_buffers
from ..precise.underflow import rounded, zone_rows
from . import spill
from .interpret import evaluate
from .model import TensorModel
from .program import topological
from ..cluster import map_ordered
from .tables import NumpyOps, TorchOps, oracle_ops


CHUNK_ENTRIES = 1 << 20  # values (per sample x nodes) the oracle walks at once: ``_chunk``
ZONE_BALLS_UP_TO = 200_000  # parameters: up to here a row in the DD's underflow zone is
#                             re-evaluated in balls (``rounded_zone``; ``CERTIFY_UP_TO`` too)
ZONE_CAP_SHIFT = 1  # the zone's balls double up to the oracle's cap / 2 (4096 -> 2048 bits):
#   each zone row is the whole program again in balls, one row at a time; a value in the zone
#   made by cancelling terms of order 1 (a softmax's p - 1 = -e^-6883 at a logit gap of 6883)
#   is resolved only to 2^-bits absolute: 1024 bits never certify it on float64's 2^-1074
#   grid, 2048 do (tests/test_zone_cancel.py)


def zone_bits(cfg: VerifyConfig) -> tuple[int, int]:
    """The balls' first and largest precision for a row in the double-double's underflow zone
    (``rounded_zone``), from the run's config: the certified oracle's start
    (``oracle_bits``) and its cap one doubling down (``oracle_max_bits`` / 2), never below
    the start.

    Arguments:
        cfg: the run's config.
    Returns:
        (first, largest) precision in bits (doubling from the first).

    >>> zone_bits(VerifyConfig()), zone_bits(VerifyConfig(oracle_bits=64, oracle_max_bits=128))
    ((128, 2048), (64, 64))
    """
    return cfg.oracle_bits, max(cfg.oracle_bits, cfg.oracle_max_bits >> ZONE_CAP_SHIFT)


ZONE_BITS = zone_bits(VerifyConfig())  # at the config's defaults (a run's: oracle_view's
#                                        zone_bits=)


def _flatten(model: TensorModel, outs: list, to_numpy: Callable, n: int) -> np.ndarray:
    width = 1 + model.n_parameters
    result = np.empty((n, width))
    result[:, 0] = np.broadcast_to(to_numpy(outs[0]).reshape(-1), (n,))
    col = 1
    for i, b in enumerate(model.param_blocks, start=1):
        g, outs[i] = outs[i], None  # free each block once copied (GPT-2: 1.3 GB in all)
        result[:, col:col + b.size] = np.broadcast_to(to_numpy(g), (n,) + b.shape).reshape(n, -1)
        col += b.size
    return result


def block_spans(model: TensorModel, n: int) -> list[tuple[int, int, tuple]]:
    """(first column, columns, shape with the batch axis) of the value and of each parameter
    block, in the order of the gradient program's outputs and of the flat (n, 1 + K) arrays.

    >>> import symgrad.tensor as st
    >>> W = st.param("W", (2, 3))
    >>> block_spans(TensorModel("s", st.sum_(W * W)), 4)
    [(0, 1, (4,)), (1, 6, (4, 2, 3))]
    """
    spans, col = [], 0
    for b in (None,) + model.param_blocks:
        size = 1 if b is None else b.size
        spans.append((col, size, (n,) if b is None else (n,) + b.shape))
        col += size
    return spans


def _n(values: Mapping[str, np.ndarray]) -> int:
    return max(np.shape(v)[0] for v in values.values())


def numpy_view(model: TensorModel, values: Mapping[str, np.ndarray], dtype: str) -> np.ndarray:
    """Value and gradient from the derived program, whole numpy arrays in ``dtype``."""
    outs = evaluate(model.gradient.outputs, NumpyOps(dtype), values)
    return _flatten(model, outs, lambda v: np.asarray(v, dtype=np.float64), _n(values))


def torch_view(model: TensorModel, values: Mapping[str, np.ndarray], *, dtype: str,
               device: str) -> np.ndarray:
    """Value and gradient by torch autograd of the forward program (one backward pass of the
    batch-summed loss: samples are independent)."""
    import torch

    table = TorchOps(dtype, device)
    leaves: dict = {}
    params = []
    for b in model.blocks:
        v = values[b.name]
        if b.is_param:
            t = table.asarray(v).requires_grad_(True)
            params.append(t)
            leaves[b.name] = t
        else:
            leaves[b.name] = v if b.node.integer else table.asarray(v)
    n = _n(values)
    out = flat_empty((n, 1 + model.n_parameters))  # inside reused_flat: a freed backend's
    with exact_math():
        hook = getattr(model, "torch_loss", None)  # order 2: torch's double backward (hvp.py)
        (loss,) = [hook(table, leaves)] if hook else evaluate([model.loss], table, leaves)
        del leaves
        out[:, 0] = np.broadcast_to(loss.detach().to("cpu", torch.float64).numpy().reshape(-1),
                                    (n,))
        # each block written into ``out`` as autograd has it (never every block twice)
        backward_into(loss.sum(), params, out, [(a, a + size) for a, size, _ in
                                                block_spans(model, n)[1:]])
    return out


def oracle_view(model: TensorModel, values: Mapping[str, np.ndarray], table, *,
                progress: Callable[[int], None] | None = None,
                spot=None, client=None, dps: int = 50,
                program: tuple | None = None, undecided: dict | None = None,
                zone_bits: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The exact value and gradient as a double-double (hi, lo), sample by sample (a small
    program's samples in chunks, ``_chunk``, under a table with ``per_sample``: the same bits);
    ``progress(done)`` counts program nodes over all samples (``oracle_steps`` in all);
    ``spot`` (a ``symgrad.tensor.spotcheck.SpotCheck``) re-checks steps of sample 0 in ARB.
    With a Dask ``client`` the samples (but a spot-checked sample 0) are tasks on its workers,
    each evaluating ``oracle_ops(dps)`` there: the same arrays come back. ``program``:
    (outputs, extra leaves (N, ...)) evaluated instead of the model's gradient program (a
    model with kinks: its sided program at each sample's sides, ``symgrad.tensor.kinks``;
    evaluated in this process). ``undecided``: a dict filled with row -> the columns of a
    row re-evaluated in balls (``rounded_zone``) that the balls could not certify (NaN now).
    ``zone_bits``: those balls' first and largest precision (``zone_bits(cfg)``; None: at the
    config's defaults, ``ZONE_BITS``)."""
    outputs, extra = program if program is not None else (None, {})
    if program is not None:
        client = None
    values = {**values, **extra}
    n = _n(values)
    width = 1 + model.n_parameters
    # lo only refines hi below its last bit: float32 keeps it to ~1e-7 ULP (GPT-2: 0.65 GB), for
    # a large model (``config.LARGE_MODEL_ENTRIES``)
    hi = spill.empty((n, width))  # GPT-2's: in a file mapping, a block's pages at a time
    lo = spill.empty((n, width), np.float32 if n * width > LARGE_MODEL_ENTRIES else np.float64)
    local = n if client is None else (1 if spot is not None else 0)
    per_sample = getattr(table, "per_sample", None)  # a table that walks samples together
    step = 1 if per_sample is None else _chunk(outputs or model.gradient.outputs, local)
    watch = isinstance(table, DDOps) and model.n_parameters <= ZONE_BALLS_UP_TO
    touched = np.zeros(n, bool)  # rows whose walk had a result in the DD's underflow zone
    s = 0
    while s < local:
        c = 1 if spot is not None and s == 0 else min(step, local - s)
        part = {k: np.asarray(v)[s:s + c] for k, v in values.items()}

        def tick(i, total, s=s, c=c):
            if progress is not None:
                progress(s * total + i * c)
        t = table.watching() if watch else table
        _oracle_rows(model, t.per_sample(c) if c > 1 else t, part, c, tick,
                     spot.visit if spot is not None and s == 0 else None, outputs,
                     into=(hi[s:s + c], lo[s:s + c]))
        if watch and t.touched:
            touched[s:s + c] = _touching(model, table, part, c, outputs) if c > 1 else True
        s += c
    if client is not None and local < n:
        rows = [{k: np.asarray(v)[s:s + 1] for k, v in values.items()}
                for s in range(local, n)]
        for s, (h, l) in enumerate(map_ordered(client, _oracle_task, rows,
                                               key=f"oracle-{model.name}", shared=(model, dps)),
                                   start=local):
            hi[s], lo[s] = h, l
    if watch:
        _, open_ = rounded_zone(model, values, hi, lo, outputs, touched=touched,
                                bits=zone_bits)
        if undecided is not None:
            undecided.update(open_)
    return hi, lo


def _touching(model: TensorModel, table, part: Mapping[str, np.ndarray], c: int,
              outputs) -> np.ndarray:
    """Which of a chunk's ``c`` rows (whose walk together touched the underflow zone) touch it
    alone: each walked again by itself under a watching table (rare: only such chunks)."""
    out = np.zeros(c, bool)
    for i in range(c):
        t = table.watching()
        _oracle_rows(model, t, {k: v[i:i + 1] for k, v in part.items()}, 1, outputs=outputs)
        out[i] = t.touched
    return out


def rounded_zone(model: TensorModel, values: Mapping[str, np.ndarray], hi: np.ndarray,
                 lo: np.ndarray, outputs=None, touched: np.ndarray | None = None, *,
                 bits: tuple[int, int] | None = None
                 ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The oracle's rows that touch the double-double's underflow zone (an input, a result or,
    per ``touched``, an intermediate 0 < |v| < 2^-969: ``symgrad.precise.underflow``,
    ``precise.ddops.WatchKernels``) made right there: each such row is
    evaluated again in ARB balls (from ``bits[0]``, doubling up to ``bits[1]``: 128 and 2048
    at the defaults, ``zone_bits``; until every finite ball is certified) and every certified
    entry replaced, in place, by the ball's value rounded to the nearest double-double: in the zone the exact value rounded to nearest on float64's
    2^-1074 grid (the DD's own products and quotients are a few spacings off there). An entry
    the balls leave uncertified at the cap is *open*: its DD value (an inf or 0 where the
    exponent range ran out, a few spacings off in the zone) is no exact value, so it becomes
    NaN and is returned as open (the run marks it inconclusive: ``tensor.doubt``), unless the
    DD and the ball are both NaN and the balls prove it undefined (every NaN they made is
    proven: ``precise.arbdomain``, e.g. a log of a ball wholly below 0; then domain). A NaN
    ball raises the precision too, and while every open entry is a NaN ball one doubling past
    the cap (the oracle's own cap at the defaults: 4096 bits): log(1 - sigmoid(1000)) takes a
    log of a ball around 0 at 128 bits and of e^-1000 at 2048, x = 2000 needs 4096 (~2900
    bits); beyond that it stays open. A row elsewhere with a NaN in the
    DD (inf/inf where an exp overflowed: sinh(w)/cosh(w) at w = 800) is evaluated in balls
    too, only its NaN entries in question: a DD NaN proves nothing undefined. Other rows cost
    one pass over the inputs and results.

    Arguments:
        model: the tensor model.
        values: the samples the rows were evaluated at (block name -> (N, ...), with any extra
            leaves of ``outputs``' program).
        hi, lo: the oracle's (N, 1 + parameters) rows, edited in place.
        outputs: the program evaluated (default the model's gradient outputs).
        touched: (N,) rows whose walk had an intermediate result in the zone (default none).
        bits: the balls' first and largest precision (``zone_bits(cfg)``; None: ``ZONE_BITS``).
    Returns:
        (the indices of the rows evaluated again, row -> its open columns).

    >>> import sympy as sp, symgrad.tensor as st
    >>> w, x = st.param("w", ()), st.input("x", ())
    >>> m = TensorModel("t", st.map_(sp.tanh(st.X[0] * st.X[1]), w, x))
    >>> v = {"w": np.array([0.9709527680353416]), "x": np.array([2.2250738585e-313])}
    >>> open_ = {}
    >>> hi, lo = oracle_view(m, v, oracle_ops(50), undecided=open_)  # rounded_zone ran on it
    >>> float(hi[0, 0]) == 43727825243 * 2.0**-1074, float(lo[0, 0]), open_
    (True, 0.0, {})
    """
    n = hi.shape[0]
    rows = zone_rows([hi, *values.values()], n)
    rows = rows if touched is None else rows | touched
    with np.errstate(invalid="ignore"):
        nans = np.isnan(hi).any(axis=1) & ~rows  # a DD NaN elsewhere is no proof either
    rows = np.flatnonzero(rows | nans)
    undecided: dict[int, np.ndarray] = {}
    first, cap = ZONE_BITS if bits is None else bits
    for r in rows:
        one = {k: (v[r:r + 1] if np.ndim(v) and np.shape(v)[0] == n else v)
               for k, v in values.items()}
        asked = np.isnan(hi[r]) if nans[r] else np.ones(hi.shape[1], bool)
        prec = first
        while True:  # a NaN ball too (a log of a ball around 0): more bits may resolve it
            watch = DomainWatch()
            balls = flat_balls(model, evaluate(outputs or model.gradient.outputs,
                                               watched(prec, watch), one))
            h, l, ok = rounded(balls)
            ok &= asked  # a NaN row outside the zone: only its NaN entries are in question
            with np.errstate(invalid="ignore"):  # NaN in DD and in balls, proven undefined
                domain = np.isnan(h) & np.isnan(hi[r]) & asked & watch.proven
            open_ = ~ok & ~domain & asked
            nan_only = bool(np.isnan(h[open_]).all())  # NaN balls: one doubling more
            if not open_.any() or prec >= (cap << ZONE_CAP_SHIFT if nan_only else cap):
                break
            prec *= 2
        hi[r, ok], lo[r, ok] = h[ok], l[ok]
        if open_.any():
            hi[r, open_], lo[r, open_] = np.nan, 0.0
            undecided[int(r)] = np.flatnonzero(open_)
    return rows, undecided


def _chunk(outputs, n: int) -> int:
    """Samples the oracle walks at once: as many as keep the program's values (all its nodes,
    per sample) within ``CHUNK_ENTRIES`` entries; 1 for a large program (GPT-2: one at a
    time, as before). A model of scalar steps runs a few hundred tiny nodes per sample, each
    a fixed cost of Python: walked together, that cost is paid once per chunk."""
    per = sum(node.size for node in topological(list(outputs)))
    return max(1, min(n, CHUNK_ENTRIES // max(per, 1)))


GIVE_BACK_FROM = 1 << 16  # entries: an emitted oracle block this large hands freed heap back
#                          (``heap.give_back``, unless the process keeps it: ``heap.kept``;
#                          small programs skip the call)


def _oracle_rows(model: TensorModel, table, part: Mapping[str, np.ndarray], c: int, tick=None,
                 on_step=None, outputs=None, into=None) -> tuple[np.ndarray, np.ndarray]:
    """``c`` samples' exact value and gradient, flattened: (hi, lo) arrays (c, 1 + parameters)
    (``outputs``: another program's loss and gradient nodes, default the model's; ``into``:
    (hi, lo) arrays to fill, e.g. rows of the whole run's). Each block is written as soon as
    the walk has it (``evaluate``'s ``emit``) and its high-precision array dropped: no whole
    gradient in the table's type (GPT-2: 2.4 GB of double-double pairs) beside hi and lo."""
    width = 1 + model.n_parameters
    hi, lo = into if into is not None else (np.empty((c, width)), np.empty((c, width)))
    spans = block_spans(model, c)

    def put(i: int, value) -> None:
        a, size, shape = spans[i]
        h, l = table.to_float64(value)
        hi[:, a:a + size] = np.broadcast_to(h, shape).reshape(c, -1)
        lo[:, a:a + size] = np.broadcast_to(l, shape).reshape(c, -1)
        del h, l
        if c * size >= GIVE_BACK_FROM:  # the walk's freed heap, as the bound's walk does:
            unless_kept(give_back)  # not where the process keeps it for the next block's
            #                         arrays (the symgrad program: a trim would fault them in)
            spill.release()  # spilled hi, lo: the block's written pages out of the resident set
    with kept_buffers():  # the walk's DD products reuse one set of work buffers
        evaluate(outputs or model.gradient.outputs, table, part, progress=tick,
                 on_step=on_step, emit=put)
    return hi, lo


def _oracle_row(model: TensorModel, table, one: Mapping[str, np.ndarray], tick=None,
                on_step=None, outputs=None) -> tuple[np.ndarray, np.ndarray]:
    """One sample's exact value and gradient, flattened: (hi, lo) rows of 1 + parameters."""
    hi, lo = _oracle_rows(model, table, one, 1, tick, on_step, outputs)
    return hi[0], lo[0]


def _oracle_task(one: Mapping[str, np.ndarray], shared) -> tuple[np.ndarray, np.ndarray]:
    """A Dask task: one sample's oracle row, with the DD table built on the worker."""
    model, dps = shared
    return _oracle_row(model, oracle_ops(dps), one)


def flat_balls(model: TensorModel, outs: list) -> np.ndarray:
    """One sample's ball outputs (value, then each parameter block) as a flat object array of
    1 + parameters balls, in the comparison's column order."""
    balls = np.empty(1 + model.n_parameters, dtype=object)
    balls[0] = np.asarray(outs[0]).reshape(-1)[0]
    col = 1
    for b, g in zip(model.param_blocks, outs[1:]):
        balls[col:col + b.size] = np.broadcast_to(np.asarray(g, dtype=object),
                                                  (1,) + b.shape).reshape(-1)
        col += b.size
    return balls


def oracle_steps(model: TensorModel, samples: int) -> int:
    """The units of ``oracle_view``'s progress: nodes of the gradient program x samples."""
    return samples * len(model.gradient.nodes)


def certify_view(model: TensorModel, values: Mapping[str, np.ndarray], hi: np.ndarray,
                 lo: np.ndarray, *, rel: float = 1e-20, abs_: float = 1e-30,
                 start: int = 128, cap: int = 512, program: tuple | None = None,
                 retry_cap: int = 4096):
    """Re-evaluate the derived program with ball arithmetic (``symgrad.precise.ARB_OPS``) on
    the first sample of ``values`` and certify the oracle's (hi, lo) row for it: every entry
    within ``rel`` (1e-4 of a float64 ULP) plus ``abs_`` of the rigorous ball. The balls'
    precision rises (``precise.certify.escalate``, from ``start`` bits, doubling up to ``cap``)
    until every radius is at most half its entry's claim: cancellation inside the program
    costs ARB bits too. Entries that still miss their claim with a ball too wide to tell (a
    NaN ball: BCE of a sigmoid at x = 1000 needs ~1450 bits, at x = 2000 ~2900) are tried
    again at doubled precision up to ``retry_cap`` (``precise.certify.recertify``; nothing
    more where the certificate holds). ``program``: as ``oracle_view``'s (the sided program of
    a model with kinks: its selectors are exact 0/1 inputs, so no ball has to decide a tie). Returns the
    ``Certificate`` (``.ok``, ``.summary()``)."""
    outputs, extra = program if program is not None else (model.gradient.outputs, {})
    one = {k: np.asarray(v)[:1] for k, v in {**values, **extra}.items()}
    hi, lo = np.asarray(hi, dtype=np.float64), np.asarray(lo, dtype=np.float64)

    def balls_at(ops) -> np.ndarray:
        return flat_balls(model, evaluate(outputs, ops, one))
    with np.errstate(invalid="ignore", over="ignore"):
        claim = rel * np.abs(hi) + abs_
    run = escalate(balls_at, claim, fraction=0.5, start=start, cap=cap)
    config = CertifyConfig(rel=rel, abs=abs_)
    cert = certify(hi, lo, run.balls, config=config)
    return recertify(balls_at, hi, lo, run, cert, config=config, cap=retry_cap)[0]
