"""The same-verdict gate's cases (issue 17): every scalar zoo model, the planted-bug suite
(tests/test_mutants.py) and the false-alarm suite's scalar cases (tests/test_false_alarms.py),
each verified through the old scalar pipeline (``sg.verify(model)`` inside
``symgrad.verify.pipeline("scalar")``) and the new tensor one
(``sg.verify(to_program(model))``) with the same seed, samples, dtype and torch_fn.

``KNOWN`` names, per case, why the new path's verdict differs today (measured by
``scripts/gate.py`` into reports/gate.md): what is left before the scalar side is deleted.
Used by tests/test_gate.py and scripts/gate.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import sympy as sp
import torch
from torch.nn import functional as F

import symgrad as sg
from symgrad import zoo
from symgrad.hvp_mutants import patched, prod_linear
from symgrad.tensor.front import to_program
from symgrad.verify import pipeline
from symgrad.zoo import gpt
from tests.test_causes import (BCE_WITH_LOGITS, SATURATED_AT, bce_loss_of_sigmoid,
                               bce_with_logits_fn, guard_model, intlog_fn, intlog_model,
                               logit_model, logits_model, overflow_model, sat_model,
                               softplus_fn, softplus_model)
from tests.test_kinks import (SOFTPLUS_AT, TIE, Z0, _max_relu, _tie_fn, _tie_model, _zero_layer,
                              _zero_layer_at, _zero_layer_fn, max_relu_fn, neuron_x15,
                              torch_maximum3)
from tests.test_kinks import softplus_model as stable_softplus_model
from tests.test_mutants import MUTANTS, SMALL, neuron_fn, on_block, simplenet_fn
from tests.test_powers import CASES as POWER_CASES
from tests.test_powers import off_by_half
from tests.test_stable import BCE_AT, _bce, _broken_bce
from tests.test_hvp import MUTANTS as HVP_MUTANTS
from tests.test_hvp import (_gelu_mutant, _log1p_mutant, _near_zero, _relu_max, neuron_prod_fn)
from tests.test_hvp import neuron_fn as hvp_neuron_fn
from tests.test_hvp import simplenet_fn as hvp_simplenet_fn


@dataclass(frozen=True)
class Case:
    """One gate row: a scalar model and the run's arguments, the same on both paths."""

    id: str
    suite: str  # "zoo", "planted bug", "correct twin", "false alarm"
    build: Callable[[], sg.Model]
    kwargs: dict = field(default_factory=dict)  # torch_fn, samples, seed, dtype, at, backends
    torch_fn: Callable | str | None = "reference"  # "reference": the model's own
    cause: str = ""  # the named cause (symgrad.causes) both paths must give its failures

    @property
    def planted(self) -> bool:
        return self.suite == "planted bug"


@dataclass
class Row:
    """The two verdicts of a case, their worst error / allowance and their times."""

    case: str
    suite: str
    old: str
    new: str
    ratio_old: float
    ratio_new: float
    seconds_old: float
    seconds_new: float
    error_new: str = ""  # the new path's SymgradError, if it raised
    phases_new: dict = field(default_factory=dict)  # the new run's timings (derive_s, ...)
    cause_old: str = ""  # the failures' distinct causes, sorted, "; "-joined ("" when none)
    cause_new: str = ""

    @property
    def same(self) -> bool:
        return self.old == self.new

    @property
    def same_cause(self) -> bool:
        return self.cause_old == self.cause_new


def _zoo_cases() -> list[Case]:
    out = []
    for name in zoo.names():
        if name == "tiny_gpt":  # already a tensor program
            continue
        for dtype in ("float64", "float32"):
            out.append(Case(f"zoo {name} {dtype}", "zoo", lambda n=name: zoo.get(n),
                            {"samples": 20, "seed": 0, "dtype": dtype}))
    return out


def _small_gpt() -> sg.Model:
    return gpt.tiny_gpt(SMALL)


def _mutant_cases() -> list[Case]:
    out = [Case(f"mutant {k}", "planted bug", lambda n=n: zoo.get(n),
                {"samples": 200, "seed": 0}, fn) for k, (n, fn) in MUTANTS.items()]
    out.append(Case("mutant scale 1e-6 float32", "planted bug", lambda: zoo.get("neuron"),
                    {"samples": 500, "seed": 0, "dtype": "float32",
                     "backends": ("torch_fn",)}, neuron_fn(scale=1 + 1e-6)))
    for block, factor in (("h0_Wq", -1.0), ("h0_ln1_g", 0.0), ("out_head", 1.5)):
        out.append(Case(f"mutant small_gpt {block} x{factor:g} float32", "planted bug",
                        _small_gpt, {"samples": 8, "seed": 0, "dtype": "float32",
                                     "backends": ("torch_fn",)},
                        on_block(_small_gpt().reference, block, factor)))
    for seed in (0, 1):
        out.append(Case(f"twin neuron seed {seed}", "correct twin", lambda: zoo.get("neuron"),
                        {"samples": 100, "seed": seed}, neuron_fn()))
        out.append(Case(f"twin simplenet seed {seed}", "correct twin",
                        lambda: zoo.get("simplenet"), {"samples": 100, "seed": seed},
                        simplenet_fn()))
    return out


def _lse(logits: list[float]) -> sg.Model:
    a = sg.matrix("a", 1, len(logits))
    return sg.Model("lse", sg.ops.total(sg.ops.log_softmax(a)), params=[a])


def _ce() -> sg.Model:
    logits, t = sg.matrix("L", 1, 3), sg.matrix("t", 1)
    return sg.Model("ce", sg.ops.cross_entropy(logits, t), params=[logits],
                    inputs={t: sg.Integers(0, 2)})


def _sig() -> sg.Model:
    z = sp.Symbol("z")
    return sg.Model("sig", 3 * sg.ops.sigmoid(z), params=[z])


def _safe() -> sg.Model:
    w = sp.Symbol("w")
    return sg.Model("safe", sp.Piecewise((sp.log(w), w > 1), (w - 1, True)), params=[w])


def _step() -> sg.Model:
    w, x = sp.symbols("w x")
    return sg.Model("step", sp.Heaviside(w * x - 1) * w**2 + w, params=[w], inputs=[x])


def _sat() -> sg.Model:
    w, x, y = sp.symbols("w x y")
    return sg.Model("sat", sg.ops.bce(sg.ops.sigmoid(w * x), y),
                    params={w: sg.Uniform(16, 40)},
                    inputs={x: sg.Uniform(0.99, 1.01), y: sg.Choice([0.0, 1.0])})


def _sat_fn(w, x, y):
    z = w * x
    return -(y * torch.nn.functional.logsigmoid(z)
             + (1 - y) * torch.nn.functional.logsigmoid(-z))


def _false_alarm_cases() -> list[Case]:
    out = []
    for dtype, logits in (("float32", [0.0, 200.0]), ("float64", [0.0, 1000.0]),
                          ("float32", [-300.0, 0.0, 300.0])):
        out.append(Case(f"log_softmax {logits} {dtype}", "false alarm",
                        lambda lg=logits: _lse(lg),
                        {"at": {"a": np.array([[logits]])}, "dtype": dtype},
                        lambda a: torch.log_softmax(a, dim=-1).sum()))
    out += [
        Case("cross_entropy large logits float32", "false alarm", _ce,
             {"at": {"L": np.array([[[0.0, 150.0, -150.0]]]), "t": np.array([[0.0]])},
              "dtype": "float32"}, None),
        Case("sigmoid tail float32", "false alarm", _sig,
             {"at": {"z": np.array([-100.0, -30.0, 0.0, 100.0])}, "dtype": "float32"},
             lambda z: 3 * torch.sigmoid(z)),
        Case("safe branch (Piecewise)", "false alarm", _safe,
             {"at": {"w": np.array([-2.0, 0.0, 0.5, 1.0, 3.0])}}, None),
        Case("heaviside", "false alarm", _step, {"samples": 50, "seed": 0}, None),
        Case("saturated stable BCE float32", "false alarm", _sat,
             {"samples": 100, "seed": 0, "dtype": "float32"}, _sat_fn),
        Case("small_gpt float32", "false alarm", _small_gpt,
             {"samples": 8, "seed": 0, "dtype": "float32"}),
    ]
    for seed in (4, 8):
        out.append(Case(f"gpt_attention float32 seed {seed}", "false alarm",
                        lambda: zoo.get("gpt_attention"), {"seed": seed, "samples": 100,
                                                           "dtype": "float32"}, None))
    return out


def _kink_cases() -> list[Case]:
    """Exact kinks, from tests/test_kinks.py (added after the switch branch showed the 49 rows
    above miss them): a smooth composition of kinked ops (the neuron's stable BCE has Max and
    Abs at z = 0 but no kink) and a subgradient at a three-way tie."""
    return [Case("kink neuron x1.5 at z=0", "planted bug", lambda: zoo.get("neuron"),
                 {"at": Z0}, neuron_x15),
            Case("kink three-way tie, a vertex subgradient", "false alarm", _tie_model,
                 {"at": TIE}, _tie_fn((1.0, 0.0, 0.0)))] + _kink_composition_cases()


def _kink_composition_cases() -> list[Case]:
    """Correct code at kinks that failed when plain models were routed through the tensor path
    (kinks of smooth compositions, ties, many kinks), from tests/test_kinks.py."""
    at_max = {k: np.array(v) for k, v in _max_relu()[1].items()}
    return [Case("kink torch.maximum at 4-way ties, 8 windows", "false alarm",
                 lambda: _max_relu()[0], {"at": at_max}, max_relu_fn(torch_maximum3)),
            Case("kink three-way tie, weights (0, 1/4, 3/4)", "false alarm", _tie_model,
                 {"at": TIE}, _tie_fn((0.0, 0.25, 0.75))),
            Case("kink 7 relus at exact zero (beyond enumeration)", "false alarm",
                 lambda: _zero_layer(7), {"at": _zero_layer_at(7)},
                 _zero_layer_fn(torch.relu)),
            Case("kink stable softplus at 0", "false alarm", stable_softplus_model,
                 {"at": SOFTPLUS_AT}, torch.nn.functional.softplus)]


def _cause_cases() -> list[Case]:
    """The catalogue of torch behaviours (symgrad.causes.CATALOGUE), from tests/test_causes.py:
    both paths must give the same verdict and the same named cause (``Case.cause``)."""
    sat = {"samples": 20, "seed": 0, "backends": ("torch_fn",)}
    return [
        Case("cause BCELoss clamp simplenet", "named cause", lambda: zoo.get("simplenet"),
             {"samples": 500, "seed": 2}, cause="BCELoss clamp"),
        Case("cause BCELoss log clamp float32", "named cause", sat_model,
             {**sat, "dtype": "float32"}, bce_loss_of_sigmoid, cause="BCELoss clamp"),
        Case("cause BCELoss log clamp bfloat16", "named cause", sat_model,
             {**sat, "dtype": "bfloat16"}, bce_loss_of_sigmoid, cause="BCELoss clamp"),
        Case("cause softplus threshold", "named cause", softplus_model,
             {"samples": 40, "seed": 0}, softplus_fn, cause="softplus threshold"),
        Case("cause softplus threshold, log(1 + e^t) by hand", "named cause",
             lambda: softplus_model(plain=True), {"samples": 40, "seed": 0}, softplus_fn,
             cause="softplus threshold"),
        Case("cause saturated logit", "named cause", logits_model,
             {"samples": 200, "seed": 0}, bce_with_logits_fn, cause="saturated logit"),
        Case("cause saturated logit float32, BCE-with-logits by hand", "named cause",
             lambda: logit_model(BCE_WITH_LOGITS["softplus"]),
             {"at": SATURATED_AT, "dtype": "float32", "backends": ("torch_fn",)},
             bce_with_logits_fn, cause="saturated logit"),
        Case("cause integer input promoted to float32", "named cause", intlog_model,
             {"samples": 30, "seed": 0, "backends": ("torch_fn",)}, intlog_fn,
             cause="integer input promoted"),
        Case("cause overflow", "named cause", overflow_model, {"samples": 30, "seed": 0},
             None, cause="overflow"),
        Case("cause guard rounds to zero float16", "named cause", guard_model,
             {"at": {"w": [0.0, 0.0]}, "dtype": "float16", "backends": ("torch",)}, None,
             cause="guard rounds to zero"),
    ]


def _limit_cases() -> list[Case]:
    """Limits and the stable-rewrite check, from tests/test_powers.py and tests/test_stable.py:
    x**y at (0, 2) and |w|**p at 0 (the derivative's formula is 0/0 or 0 log 0 there, its
    limit exists), each with the user's torch code and with d/d(first) off by 0.5; a hand-
    written BCE of a sigmoid (run as softplus) and the same model built with a wrong softplus
    rule (+1e-9: the oracle of the formula as written catches it)."""
    out = []
    for name in ("x**y at (0, 2)", "|w|**p at 0"):
        build, at, fn, _ = POWER_CASES[name]
        first = build().blocks[0].name
        at = {k: np.array(v) for k, v in at.items()}
        out += [Case(f"limits {name}", "false alarm", build, {"at": at}, fn),
                Case(f"limits {name}, d/d{first} off by 0.5", "planted bug", build, {"at": at},
                     off_by_half(fn, first))]
    own = {"backends": ("numpy", "torch")}
    return out + [
        Case("limits stable rewrite of a plain BCE", "false alarm", _bce, {"at": BCE_AT, **own},
             None),
        Case("limits wrong stable rewrite (softplus + 1e-9)", "planted bug", _broken_bce,
             {"at": {k: v[4:] for k, v in BCE_AT.items()}, **own}, None)]


# ------------------------------------------------------------------ second order (issue 17.5)
HVP_GPT = {"vocab_size": 3, "context_length": 2, "emb_dim": 4, "n_heads": 2, "n_layers": 1,
           "drop_rate": 0.0, "qkv_bias": False}  # the smallest GPT that shows every hvp bug


def _hvp_gpt() -> sg.Model:
    return gpt.tiny_gpt(HVP_GPT, name="hvp_gpt")


def _textbook_bce_fn(w, b, x, y):
    """The neuron's BCE of a sigmoid as the textbook writes it (correct, and rounding as the
    model's textbook form: the allowance of its textbook HVP program)."""
    s = torch.sigmoid(x * w + b)
    return -(y * torch.log(s) + (1 - y) * torch.log(1 - s))


def _hvp_cases() -> list[Case]:
    """Order 2 (``sg.verify(..., order=2)``, symgrad.hvp), from tests/test_hvp.py: the planted
    double-backward bugs (a custom Function's detached or x(1 + 1e-10) f' in log1p / GELU,
    torch.prod near a zero entry) on the neuron, simplenet and a plain-model GPT, their
    correct twins, kinks, and nn.BCELoss's double backward (a true torch finding)."""
    two = {"order": 2, "seed": 0}
    neuron, net = (lambda: zoo.get("neuron")), (lambda: zoo.get("simplenet"))
    out = []
    for name, build, fn, n in (("neuron", neuron, hvp_neuron_fn, 100),
                               ("simplenet", net, hvp_simplenet_fn, 40)):
        for dtype in ("float64", "float32"):
            out.append(Case(f"hvp {name} own program {dtype}", "correct twin", build,
                            {**two, "samples": 50, "dtype": dtype}, None))
        out.append(Case(f"hvp {name} correct torch code", "correct twin", build,
                        {**two, "samples": n}, fn))
        for kind, mutant in HVP_MUTANTS.items():
            out.append(Case(f"hvp {name} log1p {kind} f'", "planted bug", build,
                            {**two, "samples": n}, _log1p_mutant(fn, mutant)))
        near = {**two, "at": _near_zero(build(), 20 if name == "neuron" else 10, 0)}
        prod = (neuron_prod_fn if name == "neuron" else
                patched(fn, F, "linear", lambda orig, *a: prod_linear(*a)))
        out += [Case(f"hvp {name} torch.prod near a zero entry", "planted bug", build, near,
                     prod),
                Case(f"hvp {name} correct torch code near a zero entry", "correct twin",
                     build, near, fn)]
    ref = _hvp_gpt().reference
    out += [Case("hvp gpt reference", "correct twin", _hvp_gpt, {**two, "samples": 2}),
            Case("hvp gpt own program float32", "correct twin", _hvp_gpt,
                 {**two, "samples": 2, "dtype": "float32"}, None)]
    out += [Case(f"hvp gpt gelu {kind} f'", "planted bug", _hvp_gpt, {**two, "samples": 2},
                 _gelu_mutant(ref, mutant)) for kind, mutant in HVP_MUTANTS.items()]
    out.append(Case("hvp gpt torch.prod near a zero entry", "planted bug", _hvp_gpt,
                    {**two, "at": _near_zero(_hvp_gpt(), 1, 0)},
                    patched(ref, F, "linear", lambda orig, *a: prod_linear(*a))))
    relu_fn = _relu_max()[1]
    kinks = {"w": np.array([1.0, 0.5, 0.0]), "b": np.array([-1.0, 0.5, 0.0]),
             "x": np.array([1.0, 1.5, 0.25])}
    for dtype in ("float64", "float32"):
        out.append(Case(f"hvp neuron textbook BCE {dtype}", "false alarm", neuron,
                        {**two, "samples": 200, "dtype": dtype}, _textbook_bce_fn))
    return out + [
        Case("hvp relu/max away from kinks", "false alarm", lambda: _relu_max()[0],
             {**two, "samples": 200, "seed": 1}, relu_fn),
        Case("hvp relu/max at kinks", "false alarm", lambda: _relu_max()[0],
             {**two, "at": kinks, "seed": 1}, relu_fn),
        Case("hvp stable rewrite of a plain BCE", "false alarm", _bce,
             {**two, "at": BCE_AT, "backends": ("numpy", "torch")}, None),
        Case("hvp neuron nn.BCELoss double backward", "named cause", neuron,
             {**two, "samples": 50}, cause="real second-derivative error")]


CASES: list[Case] = (_zoo_cases() + _mutant_cases() + _false_alarm_cases() + _kink_cases()
                     + _cause_cases() + _limit_cases() + _hvp_cases())
BY_ID = {c.id: c for c in CASES}

# Why the new (tensor) path's verdict differs from the old one today; filled from
# reports/gate.md. A case listed here is xfail(strict=True) in tests/test_gate.py.
_PROB = ("the probabilistic entry bound applies to tensor programs only: the new path resolves "
         "entries the scalar worst case leaves inconclusive")
KNOWN: dict[str, str] = {
    "small_gpt float32": _PROB,
}
# planted bugs the new path passes today: a blocker of the switch, listed so that it is seen
# (xfail(strict=True) in test_planted_bug_caught_by_old_never_passes_on_new too)
MISSED_BY_NEW: frozenset[str] = frozenset()

# cases whose two runs take over ~5 s here: in the slow suite (pytest -m slow)
SLOW = {"mutant sign flip W1[2,3]", "mutant small_gpt h0_Wq x-1 float32",
        "mutant small_gpt h0_ln1_g x0 float32", "mutant small_gpt out_head x1.5 float32",
        "twin simplenet seed 0", "twin simplenet seed 1", "small_gpt float32",
        "gpt_attention float32 seed 4", "gpt_attention float32 seed 8",
        "zoo gpt_cross_entropy float64", "zoo gpt_cross_entropy float32",
        "zoo gpt_softmax float64", "zoo gpt_softmax float32", "zoo gpt_attention float64",
        "zoo gpt_attention float32", "zoo gpt_feed_forward float64",
        "zoo gpt_feed_forward float32", "hvp gpt reference", "hvp gpt own program float32",
        "hvp gpt gelu detached f'", "hvp gpt gelu scaled f'",
        "hvp gpt torch.prod near a zero entry", "hvp simplenet log1p detached f'"}


def _verdict(run: Callable[[], sg.Result]) -> tuple[str, float, float, str, dict, str]:
    t0 = time.perf_counter()
    try:
        r = run()
    except sg.SymgradError as exc:
        return "error", float("nan"), time.perf_counter() - t0, str(exc).split("\n")[0], {}, ""
    ratio = max((r.worst_ratio(b) for b in r.deciding), default=float("nan"))
    causes = "; ".join(sorted({f.cause for f in r.failures}))
    return r.verdict, float(ratio), time.perf_counter() - t0, "", dict(r.timings), causes


def run_case(case: Case) -> Row:
    """Verify the case's model through both pipelines (a fresh model each, same arguments):
    the old column pinned to the scalar pipeline (``symgrad.verify.pipeline``) whatever
    SYMGRAD_PIPELINE says, the new one a tensor program (``to_program``) by construction."""
    old_model = case.build()
    fn = old_model.reference if case.torch_fn == "reference" else case.torch_fn

    def old_run() -> sg.Result:
        with pipeline("scalar"):
            return sg.verify(old_model, torch_fn=fn, **case.kwargs)
    old = _verdict(old_run)
    new_model = to_program(case.build())
    new = _verdict(lambda: sg.verify(new_model, torch_fn=fn, **case.kwargs))
    return Row(case.id, case.suite, old[0], new[0], old[1], new[1], old[2], new[2], new[3],
               {k: round(v, 3) for k, v in new[4].items()}, old[5], new[5])

