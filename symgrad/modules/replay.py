"""A failing sample of ``sg.verify(module=, inputs=)`` saved so that the user can run it again:
one ``.pt`` file per failing sample (its parameters and buffers by the module's own names, its
inputs and targets as the module takes them), written atomically (a file is whole or absent:
``atomic.write_bytes``), its path in the finding's point.

>>> import torch, tempfile
>>> from symgrad.capture.captured import capture
>>> lin = torch.nn.Linear(2, 1).double()
>>> c = capture(lin, (torch.ones(1, 2, dtype=torch.float64),), names=["x"])
>>> path = save_sample(c, c.at(2, 0), 1, directory=Path(tempfile.mkdtemp()))
>>> p = torch.load(path)
>>> sorted(p["state"]), p["inputs"][0].shape, p["sample"]
(['bias', 'weight'], torch.Size([1, 2]), 1)
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils._pytree import tree_unflatten

from ..atomic import write_bytes
from ..capture.captured import Captured
from ..capture.names import own_labels
from ..result import Result
from ..result_text import SAVED_FILE

DIRECTORY = Path(tempfile.gettempdir()) / "symgrad-samples"  # where the files go
SAVED_MAX = 4  # failing samples saved per run (the findings shown name at most a few)
FILE_MAX_BYTES = 256 << 20  # a sample larger than this (a full GPT-2) is not saved: said why
HOW = ("p = torch.load(path); module.load_state_dict(p['state'], strict=False); "
       "loss(module(*p['inputs']), *p['targets'])")  # how a saved sample runs again
NOTE_HEADS = ("failing sample(s)", "the failing samples are not saved", "undecided sample(s)",
              "failing or undecided sample(s)", "the undecided samples are not saved",
              "the failing or undecided samples are not saved")  # its notes begin so


def _which(result: Result, samples: list) -> str:
    """What the saved samples are: "failing", "undecided" (an inconclusive run's: calling them
    failing misled, newuser8) or "failing or undecided"."""
    failing = {f.sample for f in result.failures}
    undecided = {f.sample for f in result.undecided}
    kinds = [k for k, s in (("failing", failing), ("undecided", undecided))
             if s.intersection(samples)]
    return " or ".join(kinds)


def save_sample(captured: Captured, at: dict, k: int, *, directory: Path | None = None) -> Path:
    """Sample ``k`` of ``at`` (block name -> (N, ...) values) as a ``.pt`` file.

    Arguments:
        captured: the capture the samples are of.
        at: its samples (``Captured.at``).
        k: which sample.
        directory: where to write (created if missing; default ``DIRECTORY``).
    Returns:
        The path written: ``<module>-sample<k>-<hash of its contents>.pt``, holding
        ``state`` (own name -> tensor), ``inputs`` and ``targets`` (tuples, nested as given),
        ``sample`` and ``block`` (own name -> symgrad's block name); ``keep`` (own name ->
        mask) where the run fed dropout keep-masks (``capture.dropout``).
    """
    label = own_labels(captured.slots)

    def value(s) -> torch.Tensor:  # the block's values at sample k, in the slot's dtype
        return torch.as_tensor(np.asarray(at[s.name][k])).to(s.value.dtype)
    state = {label[s.name]: value(s) for s in captured.slots
             if s.source == "state" and s.name in at}
    leaves = list(captured.call.template)
    for s in captured.slots:
        if s.source == "arg" and s.name in at:
            i = captured.call.slots[s.key]  # requires_grad as given: gradcheck runs it again
            leaves[i] = value(s).requires_grad_(bool(getattr(leaves[i], "requires_grad", 0)))
    args = tree_unflatten(leaves[:captured.call.n_leaves], captured.call.spec)  # not the
    #   dropout keep-masks after them (``capture.dropout``): saved by their names below
    n = len(args) - captured.call.n_targets
    buf = io.BytesIO()
    keep = {label[s.name]: value(s) for s in captured.slots if s.source == "arg"
            and s.name in at and captured.call.slots[s.key] >= captured.call.n_leaves}
    torch.save({"state": state, "inputs": tuple(args[:n]), "targets": tuple(args[n:]),
                "sample": k, "block": {label[s.name]: s.name for s in captured.slots}}
               | ({"keep": keep} if keep else {}), buf)
    data = buf.getvalue()
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in captured.model.name)
    digest = hashlib.sha1(data).hexdigest()[:10]  # another run's sample: another file
    path = Path(directory or DIRECTORY) / f"{name}-sample{k}-{digest}.pt"
    write_bytes(path, data)  # whole or absent
    return path


def with_saved_samples(result: Result, captured: Captured, at: dict, *,
                       directory: Path | None = None, how: str = HOW,
                       holding: str = "the module's parameters, buffers and inputs",
                       keep_values: bool = False) -> Result:
    """``result`` with the point of each failing or undecided finding replaced by the file of
    its sample (``save_sample``; at most ``SAVED_MAX`` samples, the first findings' first) and
    a note (starting with one of ``NOTE_HEADS``) saying what a file holds (``holding``) and
    how to run one again (``how``); a sample over ``FILE_MAX_BYTES`` is not written (the note
    says so and the point is kept). ``keep_values``: the file is added to the point's values
    (a gradcheck line keeps the failing entry's own value) instead of replacing them."""
    found = result.failures + result.undecided
    samples = list(dict.fromkeys(f.sample for f in found))[:SAVED_MAX]
    if not samples:
        return result
    which = _which(result, samples)
    size = sum(int(np.asarray(v[0]).nbytes) for v in at.values())
    if size > FILE_MAX_BYTES:
        result.notes.append(f"the {which} samples are not saved: one would take {size >> 20} "
                            f"MiB (over {FILE_MAX_BYTES >> 20} MiB); sample 0 is the example as "
                            "given")
        return result
    files = {k: str(save_sample(captured, at, k, directory=directory)) for k in samples}

    def fix(f):
        return replace(f, point={**(f.point if keep_values else {}), SAVED_FILE: files[
            f.sample]}) if f.sample in files else f
    for kind in ("failures", "undecided", "kinks", "precision_losses", "worst"):
        setattr(result, kind, [fix(f) for f in getattr(result, kind)])
    result.notes.append(f"{which} sample(s) {', '.join(map(str, samples))} saved ({holding} at "
                        "that sample), each finding's file in its sample values; to run one "
                        f"again: {how}")
    return result
