"""Whole-model arrays spilled to a file mapping (issue 19: GPT-2 at 64 tokens in <= 5 GB;
``symgrad.tensor.spill``): a spilled array keeps every value written through a release of its
pages, the release takes its pages out of this process's resident set (read from
/proc/self/smaps), the compare's and the deferred figures' chunk loops leave no more than a
chunk of them resident (without the release they would hold the whole array: the tests can
fail), and a verify with every hi, lo and E spilled gives the very same result as in the heap:
correct code passes, a planted wrong backward fails, named."""

import errno
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import symgrad as sg
import symgrad.tensor as st
import symgrad.tensor.comparing as comparing
import symgrad.tensor.spill as spill
from symgrad.compare import Tolerance
from symgrad.config import VerifyConfig
from symgrad.errors import SymgradError
from symgrad.tensor.comparing import compare_compact
from symgrad.tensor.model import TensorModel
from symgrad.testing import scale_block_backward

linux = pytest.mark.skipif(not Path("/proc/self/smaps").exists() or sys.platform != "linux",
                           reason="reads /proc/self/smaps")


def resident_kb(a: np.ndarray) -> int:
    """The resident kB of the mapping that holds ``a``'s first byte (/proc/self/smaps)."""
    addr = a.__array_interface__["data"][0]
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0] if line else ""
        if "-" in head and all(c in "0123456789abcdef-" for c in head):
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= addr < hi
        elif inside and line.startswith("Rss:"):
            return int(line.split()[1])
    raise AssertionError("no mapping holds the array")


def test_small_arrays_stay_in_the_heap_and_large_ones_are_spilled(monkeypatch):
    assert not spill.spilled(spill.empty((3, 4)))
    a = spill.empty((2, 5), np.float32, spill_from=10)
    assert spill.spilled(a) and spill.spilled(a[:, 1:3]) and a.dtype == np.float32
    assert a.shape == (2, 5) and a.flags.c_contiguous and a.flags.writeable
    monkeypatch.setattr(spill, "SPILL_FROM", 11)
    assert not spill.spilled(spill.empty((2, 5)))  # the threshold: entries, not bytes
    assert not spill.spilled(spill.empty((0, 5), spill_from=0))  # nothing to map


@linux
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_values_survive_a_release_and_the_pages_leave_the_resident_set(dtype):
    rng = np.random.default_rng(0)
    want = rng.standard_normal((3, 200_000)).astype(dtype)
    a = spill.empty(want.shape, dtype, spill_from=1)
    a[:, :100_000] = want[:, :100_000]  # dirty pages, not yet written back
    assert resident_kb(a) >= a.nbytes // 2 // 1024 - 8
    assert spill.release() >= 1
    assert resident_kb(a) == 0
    a[:, 100_000:] = want[:, 100_000:]  # written after a release too
    spill.release()
    assert np.array_equal(a, want)  # every bit read back from the file's pages
    assert resident_kb(a) >= a.nbytes // 1024 - 8  # the read brought them back


@linux
def test_the_compare_and_the_deferred_figures_leave_a_chunk_resident_at_most(monkeypatch):
    """compare_compact's chunk loop and EntryFigures' reads release the spilled arrays' pages
    as they go: hi (4.8 MB here) ends with nothing resident, never the whole."""
    monkeypatch.setattr(comparing, "CHUNK", 1 << 16)  # 19 chunks of 32768 columns
    rng = np.random.default_rng(1)
    n, k = 2, 300_000
    hi = spill.empty((n, k), spill_from=1)
    hi[:] = rng.standard_normal((n, k))
    lo = spill.empty((n, k), np.float32, spill_from=1)
    lo[:] = 0
    E = spill.empty((n, k), np.float32, spill_from=1)
    E[:] = 4 * np.abs(hi) + 1e-300
    got = hi + hi * 2.0**-52 * rng.integers(-2, 3, (n, k))
    spill.release()
    comp = compare_compact(hi, lo, got, E, backend="b", dtype="float64", tol=Tolerance(),
                           deferred=True)
    assert resident_kb(hi) == resident_kb(E) == 0
    assert (comp.status == 0).all()  # within 2 ULPs of a 4|x| bound: ok everywhere
    ulps = comp.figures.errors(slice(0, k))[2]  # a whole pass of the figures
    assert resident_kb(hi) == resident_kb(lo) == 0
    assert np.array_equal(ulps, np.abs(np.rint((got - hi) / np.spacing(np.abs(hi)))))


def _layer() -> TensorModel:
    W, x = st.param("W", (6, 5)), st.input("x", (5,))
    return TensorModel("layer", st.sum_(st.tanh(st.einsum("ij,j->i", W, x))))


def _layer_torch(W, x):
    return torch.sum(torch.tanh(W @ x))


@pytest.mark.parametrize("factor", [None, 1.5, 1 + 1e-9])
def test_a_verify_with_everything_spilled_is_the_heaps_byte_for_byte(monkeypatch, factor):
    """Every hi, lo and E of a 31-parameter layer in file mappings (the threshold forced to 0):
    the same result JSON (it holds no timings) as in the heap; correct code passes, x1.5 and
    x(1+1e-9) on W's backward fail, named."""
    fn = _layer_torch if factor is None else scale_block_backward(_layer_torch, "W", factor)
    cfg = VerifyConfig(samples=20, seed=0, progress=False)
    heap = sg.verify(_layer(), torch_fn=fn, config=cfg)
    made = []
    right = spill.empty

    def counting(shape, dtype=np.float64, *, spill_from=None):
        a = right(shape, dtype, spill_from=spill_from)
        made.append(spill.spilled(a))
        return a
    monkeypatch.setattr(spill, "SPILL_FROM", 0)
    monkeypatch.setattr(spill, "empty", counting)
    spilled = sg.verify(_layer(), torch_fn=fn, config=cfg)
    assert made and all(made)  # hi, lo and E at least, each in a file mapping
    assert len(made) >= 3
    # the result's JSON holds no timings (``Result.as_dict``: times kept apart), so it is compared
    # whole
    a, b = (json.dumps(r.as_dict(), sort_keys=True) for r in (heap, spilled))
    assert a == b and '"timings"' not in a and "_s\": " not in a
    assert spilled.verdict == ("pass" if factor is None else "fail")
    if factor is not None:
        assert {f.output.split("[")[0] for f in spilled.failures
                if f.backend == "torch_fn"} == {"d/dW"}


def test_no_room_or_no_directory_is_one_clear_error(monkeypatch, tmp_path):
    """A full disk would otherwise be a SIGBUS at the first write past the room (a sparse
    file): the room is reserved up front, and its lack is one line naming TMPDIR."""
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    with pytest.raises(SymgradError, match=r"cannot spill 0\.00 GiB .*No space left.*TMPDIR"):
        spill.empty((4, 4), spill_from=1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with pytest.raises(SymgradError, match=r"cannot spill a \(4, 4\) float64 array .*missing"
                                           r".*set TMPDIR"):
        spill.empty((4, 4), spill_from=1)
