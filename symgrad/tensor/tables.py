"""Array-ops tables (the contract in ARRAYOPS.md): numpy, torch and an mpmath-object oracle.

Each table implements the same methods on its own array type; the one interpreter
(``symgrad.tensor.interpret``) calls them. Elementwise maps are printed through symgrad's own
per-backend tables (``symgrad.codegen`` targets), compiled once per expression and cached.
The high-precision double-double / ball tables live in ``symgrad.precise``.

>>> import numpy as np, sympy as sp
>>> from symgrad.tensor.tables import NumpyOps
>>> t = NumpyOps("float64")
>>> x = sp.Symbol("x0", real=True)
>>> t.map(sp.exp(x) - 1, {x: np.zeros(2)}).tolist()
[0.0, 0.0]
"""

from __future__ import annotations

import mpmath
import numpy as np
import sympy as sp

from ..backends.mpmath import target as mpmath_target
from ..backends.numpy import target as numpy_target
from ..backends.torch import TARGET, TORCH_DTYPES, check_device
from ..codegen import compile_program
from ..errors import SymgradError
from ..precise import DD_OPS
from ..precise.device_ops import DeviceDDOps

_Y = sp.Symbol("y_out", real=True)
_COMPILED: dict = {}


def _compiled(expr: sp.Expr, syms: tuple, target, key) -> callable:
    k = (key, expr, syms)
    fn = _COMPILED.get(k)
    if fn is None:
        fn = compile_program([(_Y, expr)], list(syms), [_Y], target, fname="map")
        _COMPILED[k] = fn
    return fn


def _args(expr, args):
    syms = tuple(sorted(args, key=lambda s: s.name))
    return syms, [args[s] for s in syms]


class NumpyLayout:
    """Layout methods shared by every table whose arrays are numpy arrays (of floats or of
    objects: mpmath numbers, sympy expressions): gather, reshape, transpose, broadcast, select."""

    def take(self, x, idx, axis):
        return np.take(x, idx, axis=axis)

    def reshape(self, x, shape):
        return np.reshape(x, shape)

    def transpose(self, x, perm):
        return np.transpose(x, perm)

    def broadcast_to(self, x, shape):
        return np.broadcast_to(x, shape)

    def where(self, mask, a, b):
        return np.where(mask, a, b)

    def shape(self, x):
        return tuple(np.shape(x))


class NumpyOps(NumpyLayout):
    """Whole numpy arrays in ``dtype`` (float64 / float32 / float16); BLAS contractions."""

    def __init__(self, dtype: str = "float64") -> None:
        self.dtype = np.dtype(dtype)
        self._target = numpy_target(dtype)
        self.name = f"numpy-{dtype}"

    def asarray(self, x):
        return np.asarray(x, dtype=self.dtype)

    def constant(self, c, shape=()):
        return np.full(shape, float(c), dtype=self.dtype)

    def map(self, expr, args):
        syms, vals = _args(expr, args)
        with np.errstate(all="ignore"):
            out = _compiled(expr, syms, self._target, self.name)(vals)[0]
        shape = np.broadcast_shapes(*[np.shape(v) for v in vals])
        out = np.asarray(out, dtype=self.dtype)
        return out if out.shape == shape else np.broadcast_to(out, shape).copy()

    def einsum(self, spec, *ops):
        # IEEE results as the backend computes them, as ``map``'s: inf * 0 is NaN where the
        # program is undefined (std of a constant row: 0/0 times its adjoint), compared as such
        with np.errstate(invalid="ignore", over="ignore"):
            return np.einsum(spec, *ops, optimize=len(ops) > 1)

    def sum(self, x, axis, keepdims=False):
        return np.sum(x, axis=axis, keepdims=keepdims)

    def amax(self, x, axis, keepdims=False):
        return np.max(x, axis=axis, keepdims=keepdims)

    def scatter_add(self, x, idx, axis, size):
        assert axis == 0
        out = np.zeros((size,) + x.shape[1:], dtype=x.dtype)
        np.add.at(out, idx, x)
        return out

    def to_float64(self, x):
        x = np.asarray(x, dtype=np.float64)
        return x, np.zeros_like(x)

    def radius(self, x):
        return None


class TorchOps:
    """torch tensors on ``device`` in ``dtype``; what autograd differentiates."""

    def __init__(self, dtype: str = "float64", device: str = "cpu") -> None:
        import torch

        self.torch = torch
        self.dtype = TORCH_DTYPES[dtype]
        self.device = device
        self._target = TARGET
        self.name = "torch"

    def asarray(self, x):
        return self.torch.as_tensor(np.asarray(x, dtype=np.float64), device=self.device).to(
            self.dtype)

    def constant(self, c, shape=()):
        return self.torch.full(tuple(shape), float(c), dtype=self.dtype, device=self.device)

    def map(self, expr, args):
        syms, vals = _args(expr, args)
        out = _compiled(expr, syms, self._target, self.name)(vals)[0]
        if not isinstance(out, self.torch.Tensor):  # a constant expression
            out = self.constant(out, ())
        shape = self.torch.broadcast_shapes(*[v.shape for v in vals])
        return out if tuple(out.shape) == tuple(shape) else out.expand(shape)

    def einsum(self, spec, *ops):
        return self.torch.einsum(spec, *ops)

    def sum(self, x, axis, keepdims=False):
        return x.sum(dim=axis, keepdim=keepdims) if axis != () else x

    def stop(self, x):
        """stop_gradient: the value, no gradient (the softmax shift's derivative is zero)."""
        return x.detach()

    def amax(self, x, axis, keepdims=False):
        return x.amax(dim=axis, keepdim=keepdims) if axis != () else x

    def take(self, x, idx, axis):
        return self.torch.index_select(x, axis, self.torch.as_tensor(idx, device=self.device))

    def scatter_add(self, x, idx, axis, size):
        out = self.torch.zeros((size,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
        return out.index_add(0, self.torch.as_tensor(idx, device=self.device), x)

    def reshape(self, x, shape):
        return x.reshape(tuple(shape))

    def transpose(self, x, perm):
        return x.permute(*perm)

    def broadcast_to(self, x, shape):
        return x.expand(tuple(shape))

    def where(self, mask, a, b):
        return self.torch.where(self.torch.as_tensor(mask, device=self.device), a, b)

    def shape(self, x):
        return tuple(x.shape)

    def to_float64(self, x):
        x = x.detach().to("cpu", self.torch.float64).numpy()
        return x, np.zeros_like(x)

    def radius(self, x):
        return None


class MpmathOps(NumpyLayout):
    """numpy object arrays of mpmath numbers at ``dps`` digits: a slow, simple oracle for small
    programs and the reference the double-double table is tested against. Each entry carries
    ``dps`` digits, so its results are exact to ~dps-5 digits (not a rigorous enclosure)."""

    def __init__(self, dps: int = 50) -> None:
        self.dps = dps
        self._target = mpmath_target(dps)
        self.name = f"mpmath-{dps}"

    def asarray(self, x):
        x = np.asarray(x)
        out = np.empty(x.shape, dtype=object)
        flat = out.reshape(-1)
        with mpmath.workdps(self.dps):
            for i, v in enumerate(x.reshape(-1)):
                flat[i] = mpmath.mpf(float(v))
        return out

    def constant(self, c, shape=()):
        with mpmath.workdps(self.dps):
            v = self._target.constant(sp.sympify(c))
        out = np.empty(shape, dtype=object)
        out.fill(v)
        return out

    def map(self, expr, args):
        syms, vals = _args(expr, args)
        fn = _compiled(expr, syms, self._target, self.name)
        with mpmath.workdps(self.dps):
            if not vals:
                return np.array(fn([])[0], dtype=object)
            f = np.frompyfunc(lambda *a: _real(fn(list(a))[0]), len(vals), 1)
            out = f(*vals)
        return np.asarray(out, dtype=object)

    def einsum(self, spec, *ops):
        with mpmath.workdps(self.dps):
            return np.asarray(np.einsum(spec, *ops, optimize=False), dtype=object)

    def sum(self, x, axis, keepdims=False):
        with mpmath.workdps(self.dps):
            return np.asarray(np.sum(x, axis=axis, keepdims=keepdims), dtype=object)

    def amax(self, x, axis, keepdims=False):
        return np.asarray(np.max(x, axis=axis, keepdims=keepdims), dtype=object)

    def scatter_add(self, x, idx, axis, size):
        out = self.constant(0, (size,) + x.shape[1:])
        with mpmath.workdps(self.dps):
            for i, row in zip(idx, x):
                out[i] = out[i] + row
        return out

    def to_float64(self, x):
        x = np.asarray(x, dtype=object)
        hi = np.empty(x.shape)
        lo = np.zeros(x.shape)
        with mpmath.workdps(self.dps):
            for i, v in np.ndenumerate(x):
                h = float(v) if v is not None else np.nan
                hi[i] = h
                lo[i] = float(v - h) if np.isfinite(h) else 0.0
        return hi, lo

    def radius(self, x):
        return None


def _real(v):
    if isinstance(v, mpmath.mpc):
        return mpmath.nan
    return v


def oracle_ops(dps: int = 50, *, products: str = "numpy"):
    """The oracle's table: ``symgrad.precise.DD_OPS`` (double-double, ~106 bits; its claims
    in ARRAYOPS.md). ``MpmathOps(dps)`` is the slow reference it is tested against.
    ``products``: where its Ozaki products run, "numpy" or a torch device
    (``VerifyConfig.oracle_products``; ``symgrad.precise.device_ops``)."""
    if products == "numpy":
        return DD_OPS
    check_device(products, "float64")
    return DeviceDDOps(products)


def check_table(table) -> None:
    """A clear error when an ops table misses a method of the contract."""
    needed = ("asarray", "constant", "map", "einsum", "sum", "amax", "take", "scatter_add",
              "reshape", "transpose", "broadcast_to", "where", "shape", "to_float64")
    missing = [m for m in needed if not hasattr(table, m)]
    if missing:
        raise SymgradError(f"array-ops table {type(table).__name__} lacks {missing} "
                           "(see ARRAYOPS.md)")
