"""The pipeline, top to bottom: model -> derive -> run -> oracle -> compare -> causes -> result.

Every model is verified as a tensor program: a plain ``sg.Model`` as its program
(``as_program``: ``symgrad.tensor.front.to_program``, built once per model), which
``symgrad.tensor.verify`` derives, runs, bounds, compares and explains; a user's ``nn.Module``
by parameter name goes through ``symgrad.modules`` (its paths as extra backends of the same
program), any module with ``inputs=`` is captured first (``symgrad.modules.any``), and order 2
verifies the program's HVP model (``symgrad.hvp``). ``exact_at`` / ``exact_steps`` give the
exact values at one point.

>>> import sympy as sp, symgrad as sg
>>> x, y, w, b = sp.symbols("x y w b")
>>> model = sg.Model("neuron", sg.ops.bce(sg.ops.sigmoid(w * x + b), y), params=[w, b],
...                  inputs={x: sg.Uniform(-3, 3), y: sg.Choice([0.0, 1.0])})
>>> sg.verify(model, samples=50, seed=0).ok
True
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import mpmath

from . import hvp
from .compare import Tolerance
from .config import MODEL_SAMPLES, VerifyConfig
from .errors import checked_keywords
from .model import Model
from .modules import ModuleOptions, module_torch_fn, verify_module
from .modules.any import DEFAULT_SAMPLES, verify_any_module
from .modules.options import check_options
from .progress import phase
from .result import Result
from .tensor.model import TensorModel, program_of
from .tensor.exact import exact_point
from .tensor.exact import exact_steps as program_steps
from .tensor.tie_sides import tie_sides
from .tensor.verify import verify_tensor

__all__ = ["VerifyConfig", "as_program", "exact_at", "exact_steps", "verify"]


@checked_keywords  # sg.verify(model, sampels=5): one line, "did you mean 'samples'?"
def verify(model: Model | None = None, *, torch_fn: Callable | None = None,
           samples: int | None = None, seed: int | None = None,
           device: str | None = None, dtype: str | None = None,
           config: VerifyConfig | None = None,
           tolerance: Tolerance | None = None, at: dict | None = None,
           backends: Sequence[str] | None = None, module=None, module_map=None,
           train: bool = False, loss: Callable | None = None,
           paths: tuple[str, ...] = ("eager",), client=None, order: int | None = None,
           inputs=None, targets=None, frozen: str = "check",
           progress: bool | None = None) -> Result:
    """Verify every gradient of ``model`` against the exact derivative.

    Arguments:
        model: the ``sg.Model`` to verify (None with ``module=`` and ``inputs=``).
        torch_fn: optional user torch code for the same model, ``fn(**blocks) -> scalar`` for one
            sample, arguments matched by block name; verified in addition to the model's own
            program run in torch.
        samples, seed, device, dtype: the run (default: ``config``'s, else seed 0, cpu,
            float64); samples defaults to 500, or 8 with ``module=`` and ``inputs=``.
        config: a full ``VerifyConfig``. A keyword it shares (samples, seed, device, dtype,
            tolerance, backends, order, progress) given beside it sets that field where the
            config leaves it at its default; where the config sets it to another value, one
            line names both (``VerifyConfig.with_keywords``). Its ``samples`` left at None is
            the path's default above (so ``config=`` never changes how many are drawn).
        tolerance: override the verdict's knobs.
        at: explicit samples instead of random draws: block name (or its sympy symbol) ->
            array (N, *block shape), or one sample's value (a scalar for a scalar block);
            used by property-based tests (``symgrad.testing``).
        backends: which to verify, any of "numpy", "torch" (symgrad's own programs) and
            "torch_fn" (your code); default all. ``backends=("torch_fn",)`` verifies only
            your code.
        module: a user's ``torch.nn.Module``: with ``inputs=`` any module (below); with a
            model, verified by parameter name (``symgrad.modules``): GPT layouts (book,
            nanoGPT, Hugging Face GPT-2, symgrad's own) are detected from its parameter names;
            ``module_map`` gives any other mapping. ``train`` (dropout fed symgrad's
            keep-masks), ``loss(output, targets)``, ``paths`` ("eager", "compile",
            "sdpa-math", ...) apply to it.
        inputs, targets: with ``module=`` and no model: ANY module, captured
            (``symgrad.modules.any``): ``inputs`` (a tensor or a tuple) are fed to it,
            ``loss(module(*inputs), targets)`` is the loss (no loss: the module's output,
            reduced by a random cotangent if not a scalar); gradients are named by the
            module's own parameter names; ``train``, ``paths`` apply. E.g.
            ``sg.verify(module=cnn, inputs=x, targets=y, loss=F.cross_entropy)``. A dict is
            refused (they are passed positionally: a tuple in the forward's order).
        frozen: with ``inputs=``, what a parameter with ``requires_grad=False`` is: "check"
            (the default: checked as if trainable, the gradient autograd would give it) or
            "hold" (held at its value, as a buffer; its gradient is not compared).
        client: a Dask ``distributed.Client`` (``symgrad.cluster.connect``): the exact oracle
            runs as tasks on its workers, chunks of samples each; the Result is the same as
            in-process.
        order: 1 (gradients; the default) or 2: Hessian-vector products along a random
            direction per sample, torch's double backward against the exact HVP (``symgrad.hvp``); with
            ``module=`` and a model, the module's eager path under double backward (as the
            torch_fn backend); a plain model's HVP is built from its tensor program.
        progress: print each phase and its time on stderr, as the CLI does on a terminal
            (``VerifyConfig.progress``; a run is silent by default).
    Returns:
        A ``Result``; ``result.ok`` is the verdict, ``print(result)`` a table per parameter.
    """
    default = DEFAULT_SAMPLES if inputs is not None else MODEL_SAMPLES  # the path's own
    cfg = (config or VerifyConfig()).with_keywords(  # one rule for each shared keyword
        "verify", samples=samples, seed=seed, device=device, dtype=dtype, tolerance=tolerance,
        backends=backends, order=order, progress=progress).with_samples(default)
    cfg.chosen_backends(torch_fn is not None)  # a bad backends= fails here, in one line
    check_options(model=model, module=module, inputs=inputs, targets=targets, at=at,
                  torch_fn=torch_fn, module_map=module_map, order=cfg.order, frozen=frozen,
                  train=train, loss=loss, backends=backends)
    paths = (paths,) if isinstance(paths, str) else tuple(paths)
    if inputs is not None:  # any nn.Module, captured with its example inputs
        return verify_any_module(module, inputs, targets=targets, cfg=cfg,
                                 options=ModuleOptions(None, train, loss, paths, frozen))
    options = ModuleOptions(module_map, train, loss, paths)
    name = getattr(model, "name", "")  # a non-model is named by as_program, in one line
    with phase(f"compiling {name} to its tensor program (once per model)", enabled=cfg.progress):
        model = as_program(model)  # the one conversion: a TensorModel is its own program
    if cfg.order == 2 and module is not None:  # a module at order 2: its eager path as torch_fn
        model, torch_fn = module_torch_fn(model, module, cfg=cfg, options=options)
        module = None
    if cfg.order == 2:  # the first-order run of the HVP model is the second-order one
        derived, fn = hvp.second_order(model, torch_fn, module)
        return hvp.with_function_note(hvp.relabel(
            verify(derived, torch_fn=fn, config=replace(cfg, order=1),
                   at=hvp.with_directions(model, at, cfg.seed), client=client),
            model, getattr(torch_fn, "names", None)), model, torch_fn)  # a module's own names
    if module is not None:  # a user's nn.Module by parameter name, on the tensor program
        return verify_module(model, module, cfg=cfg, options=options)
    return verify_tensor(model, torch_fn=torch_fn, at=at, cfg=cfg, client=client)


def as_program(model: Model | TensorModel) -> TensorModel:
    """The plain ``model`` as its tensor program (``to_program``), built once per model and
    cached on it: the program caches its own gradient, so verifying one model again skips
    both. A tensor program is itself.

    Arguments:
        model: an ``sg.Model`` or a ``TensorModel``.
    Returns:
        The ``TensorModel`` that ``sg.verify`` verifies.

    >>> import sympy as sp, symgrad as sg
    >>> w = sp.Symbol("w")
    >>> m = sg.Model("square", w**2, params=[w])
    >>> as_program(m) is as_program(m) is as_program(as_program(m))
    True
    """
    return program_of(model)


@checked_keywords  # a misspelled keyword: one line naming it and the one meant
def exact_at(model: Model | TensorModel, point: dict, *, dps: int = 50) -> dict[str, "mpmath.mpf"]:
    """The exact loss and gradient at one point, at ``dps`` digits.

    Arguments:
        model: the model.
        point: block name (or symbol) -> value (a number, or a nested list / array for a block).
        dps: significant digits.
    Returns:
        ``{"value": L, "d/dw": dL/dw, ...}`` as mpmath numbers.

    >>> import sympy as sp, symgrad as sg
    >>> from symgrad import zoo
    >>> g = sg.exact_at(zoo.get("neuron"), {"x": 1.1, "w": 2.2, "b": 0, "y": 1})
    >>> round(float(g["d/dw"]), 4), round(float(g["d/db"]), 4)
    (-0.0898, -0.0817)
    """
    program = as_program(model)  # a plain model's entries keep their own names
    names = None if program is model else model.entries
    return exact_point(program, point, dps=dps, names=names,
                       sides=tie_sides(program, point, "exact_at"))


@checked_keywords
def exact_steps(model: Model, point: dict, *, dps: int = 50) -> dict:
    """The exact value of every leaf and every step of the model's textbook (display) program
    at one point: ``{symbol: mpf}``, certified to ``dps`` digits (``symgrad.tensor.exact``, on
    the model's tensor program: its ``textbook_program`` where it has one).

    >>> from symgrad import zoo
    >>> v = exact_steps(zoo.get("neuron"), {"x": 1.1, "w": 2.2, "b": 0, "y": 1}, dps=20)
    >>> {str(k): round(float(e), 4) for k, e in v.items()}["a"]
    0.9183
    """
    program = as_program(model)
    return program_steps(program.textbook_program or program, point, dps=dps)
