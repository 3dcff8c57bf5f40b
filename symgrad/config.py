"""Every setting of a verification run, in one typed, frozen config."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Optional

from .compare import Tolerance
from .compare.tolerance import DTYPES
from .errors import SymgradError, checked_keywords

# whole-model entries (samples x (1 + parameters)) from which a run is a large model, the one
# size every memory decision for it reads: from here memory, not time or a figure's last bits,
# decides how its whole-model arrays are held. tensor/spill.py (``SPILL_FROM``: hi, lo and E in
# file mappings), tensor/upward.py (``FLOAT32_FROM``: E in float32 rounded away from zero),
# tensor/views.py (the oracle's lo in float32), tensor/comparing.py (``COMPACT_FROM``: ULPs and
# allowances in float32), tensor/verify.py (``NUMPY_VIEW_UP_TO``: the numpy view left out, its
# memory left to the other backends). Each keeps its own name for it, so that a test can make one
# mechanism run on a small model without the others. GPT-2 (163M entries a sample) is large.
LARGE_MODEL_ENTRIES = 50_000_000
CERTIFY_UP_TO = 200_000  # parameters: up to here sample 0 is re-checked whole with ARB balls and
#   a mismatch must leave the rigorous enclosure (symgrad.rigorous); above, every step of sample 0
#   is spot-certified (tensor/spotcheck.py) and a mismatch rests on the fast allowance alone
MODEL_SAMPLES = 500  # samples a run draws when none are asked for (``VerifyConfig.samples`` None);
#   ``sg.verify(module=, inputs=)`` checks ``symgrad.modules.any.DEFAULT_SAMPLES`` (8) instead
OWN_BACKENDS = ("numpy", "torch")  # symgrad's own programs of the model
BACKENDS = OWN_BACKENDS + ("torch_fn",)  # ... and the user's torch code


def dtype_name(dtype: object, option: str = "dtype") -> str:
    """The dtype's name ("float64", ...) from a name or a torch dtype (``torch.float64``);
    the one place a dtype option is read (``VerifyConfig``, ``gradcheck``, the commands).

    >>> import torch
    >>> dtype_name(torch.float32), dtype_name("bfloat16"), dtype_name("torch.float64")
    ('float32', 'bfloat16', 'float64')
    """
    text = str(dtype)
    if type(dtype).__name__ == "dtype" and text.startswith("torch."):  # torch.dtype, duck-typed
        name = text[len("torch."):]
        if name not in DTYPES:
            raise SymgradError(f"{option}={text} is not supported; use one of "
                               f"{', '.join('torch.' + d for d in DTYPES)} (or its name)")
        return name
    if isinstance(dtype, str) and dtype.startswith("torch.") and dtype[6:] in DTYPES:
        return dtype[6:]  # --dtype torch.float64
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise SymgradError(f"unknown {option} {dtype!r}; choose one of {', '.join(DTYPES)} "
                           "(or torch.float64, ...)")
    return dtype


@checked_keywords  # VerifyConfig(sample=5): one line, "did you mean 'samples'?"
@dataclass(frozen=True)
class VerifyConfig:
    samples: int | None = None  # randomized samples (parameters and inputs drawn from their
    # domains); None: the path's default, resolved by the run (``with_samples``) and shown
    # resolved in its Result: MODEL_SAMPLES, or 8 with sg.verify(module=, inputs=)
    seed: int = 0  # seeds the one numpy Generator all draws come from
    device: str = "cpu"  # torch device: cpu, cuda, cuda:1, mps
    dtype: str = "float64"  # dtype of the torch and numpy backends (float64, float32, ...)
    oracle_dps: int = 50  # digits of exact_steps' values (explanations); kept for old configs
    oracle_bits: int = 128  # the certified (ball-arithmetic) oracle starts at this precision
    oracle_max_bits: int = 4096  # ... and doubles up to this cap: wider is "inconclusive"
    oracle_samples: int | None = None  # samples checked by the oracle; None: all, capped by cost
    oracle_budget: int = 3_000_000  # cap for None above: program operations x samples
    tolerance: Tolerance = field(default_factory=Tolerance)  # the verdict's knobs
    torch_fn_batching: str = "loop"  # "loop": plain autograd per sample, the path training
    # runs; "vmap": torch.func.vmap(grad) - faster, but batching rules can change the numerics
    # (seen: BCE-with-logits backward loses 1e-10 relative under vmap, not under plain autograd)
    max_failures: int = 10  # failures kept in a result, worst first
    progress: bool = False  # progress bar on stderr for long runs
    backends: Optional[tuple[str, ...]] = None  # which to verify (numpy, torch, torch_fn);
    # None: all there are. ("torch_fn",) verifies only the user's code
    order: int = 1  # 1: gradients; 2: Hessian-vector products (torch's double backward)
    threads: int | None = field(default=None, kw_only=True)  # threads of the oracle's and the
    # bound's large passes (``symgrad.parallel``); None: the machine's cores (torch's intra-op
    # threads: 1 where a process set torch.set_num_threads(1), as the test suite does). The
    # bits are the same on any count, so the Result (its JSON) does not record it

    def __post_init__(self) -> None:
        if not isinstance(self.dtype, str):  # a torch dtype: its name (frozen: set once here)
            object.__setattr__(self, "dtype", dtype_name(self.dtype))
        if self.samples is not None and (not isinstance(self.samples, int)
                                         or isinstance(self.samples, bool) or self.samples < 1):
            raise SymgradError(f"samples must be a positive integer, got {self.samples!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise SymgradError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.oracle_dps < 40:
            raise SymgradError(f"oracle_dps={self.oracle_dps}: the oracle needs at least 40 "
                               "significant digits")
        if not 53 <= self.oracle_bits <= self.oracle_max_bits:
            raise SymgradError(f"oracle_bits={self.oracle_bits}, oracle_max_bits="
                               f"{self.oracle_max_bits}: need 53 <= oracle_bits <= "
                               "oracle_max_bits (the oracle's start and cap, in bits)")
        if self.torch_fn_batching not in ("loop", "vmap"):
            raise SymgradError(f"torch_fn_batching={self.torch_fn_batching!r}: choose 'loop' "
                               "(plain autograd per sample) or 'vmap'")
        if self.order not in (1, 2):
            raise SymgradError(f"order={self.order!r}: symgrad verifies gradients (order=1) and "
                               "Hessian-vector products (order=2)")
        if self.threads is not None and (not isinstance(self.threads, int)
                                         or isinstance(self.threads, bool) or self.threads < 1):
            raise SymgradError(f"threads must be a positive integer or None (the machine's "
                               f"cores), got {self.threads!r}")
        if self.oracle_samples is not None and self.oracle_samples < 1:
            raise SymgradError(f"oracle_samples must be >= 1 or None, got {self.oracle_samples}")
        if self.backends is not None:
            if isinstance(self.backends, str) or not all(isinstance(b, str)
                                                         for b in self.backends):
                raise SymgradError(f"backends must be a tuple of names, e.g. ('torch_fn',), got "
                                   f"{self.backends!r}")
            unknown = [b for b in self.backends if b not in BACKENDS]
            if unknown or not self.backends:
                raise SymgradError(f"backends: unknown {unknown or 'empty selection'}; choose "
                                   f"from {', '.join(BACKENDS)}")

    def with_samples(self, default: int) -> "VerifyConfig":
        """This config with ``samples`` resolved: its own where set, else ``default`` (the
        path's: ``MODEL_SAMPLES``, or 8 for a captured module).

        >>> VerifyConfig().with_samples(8).samples, VerifyConfig(samples=3).with_samples(8).samples
        (8, 3)
        """
        return self if self.samples is not None else replace(self, samples=default)

    def with_keywords(self, who: str, **given: object) -> "VerifyConfig":
        """This config with the keywords a call gave beside it (``sg.verify(config=cfg,
        seed=3)``) applied; a keyword left at None was not given. The one rule for every
        keyword a call shares with ``VerifyConfig``: a given keyword sets its field where the
        config leaves that field at its default, or agrees with it; where the config sets it
        to another value, which one the user meant would be a guess: one line naming both.

        Arguments:
            who: the call, as the message names it ("verify").
            given: field name -> the keyword's value (None: not given).
        Returns:
            The config with the given fields set.

        >>> VerifyConfig(oracle_bits=256).with_keywords("verify", seed=3, dtype=None).seed
        3
        >>> VerifyConfig(seed=5).with_keywords("verify", seed=3)
        Traceback (most recent call last):
        ...
        symgrad.errors.SymgradError: verify: seed=3 and config.seed=5 disagree; give it once: drop seed= or pass config=dataclasses.replace(config, seed=3)
        """
        changes = {}
        for name, value in given.items():
            if value is None:
                continue
            if name == "dtype" and not isinstance(value, str):
                value = dtype_name(value)  # torch.float32 is the config's "float32"
            if name == "backends":
                value = (value,) if isinstance(value, str) else tuple(value)
            own = getattr(self, name)
            if value == own:
                continue
            if own != _DEFAULTS[name]:
                raise SymgradError(f"{who}: {name}={value!r} and config.{name}={own!r} "
                                   f"disagree; give it once: drop {name}= or pass "
                                   f"config=dataclasses.replace(config, {name}={value!r})")
            changes[name] = value
        return replace(self, **changes) if changes else self

    def chosen_backends(self, has_torch_fn: bool) -> tuple[str, ...]:
        """The backends this run verifies; 'torch_fn' only with a torch_fn."""
        if self.backends is None:
            return BACKENDS if has_torch_fn else OWN_BACKENDS
        if "torch_fn" in self.backends and not has_torch_fn:
            raise SymgradError("backends includes 'torch_fn' but no torch_fn was given; pass "
                               "torch_fn=your_function or drop 'torch_fn'")
        return tuple(self.backends)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["tolerance"] = self.tolerance.as_dict()
        del d["progress"]  # how it was displayed is not part of the result
        del d["threads"]  # nor how many threads computed it (the same bits on any count)
        return d


# each field's default: a keyword beside config= sets a field left at it (``with_keywords``)
_DEFAULTS = {f: getattr(VerifyConfig(), f) for f in VerifyConfig.__dataclass_fields__}
