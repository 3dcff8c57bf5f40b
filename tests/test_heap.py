"""symgrad.heap: the ``symgrad`` program keeps freed arrays in its heap for the next ones (no
fresh page faults), a user's own allocator settings win, and library calls change nothing.
Each case runs in its own process: the settings last for the process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from symgrad import heap

ROOT = Path(__file__).resolve().parents[1]

# re-allocates a 64 MiB array 8 times after one warm-up and counts the minor page faults
PROBE = """
import json, resource, sys
import numpy as np
from symgrad import heap
kept = heap.keep_freed() if sys.argv[1] == "keep" else False
a = np.ones(1 << 23)
(a * 2.0).sum()
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):
    b = a * 2.0
    c = b + a
    del b, c
print(json.dumps({"kept": kept, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0,
                  "flag": heap.kept()}))
"""


def _probe(mode: str, **env) -> dict:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES",
                            "SYMGRAD_HEAP")}
    environ.update(env, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         env=environ, check=True).stdout
    return json.loads(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_heap_reuses_freed_arrays_without_faulting_them_in_again():
    """16 fresh 64 MiB arrays: mapped and faulted in each time by default (>= 32 faults each
    even in 2 MiB huge pages), reused from the heap once kept."""
    system, kept = _probe("system"), _probe("keep")
    assert kept["kept"] and kept["flag"] and not system["flag"]
    assert system["faults"] >= 16 * 32
    assert kept["faults"] * 8 < system["faults"], (kept, system)


def test_user_settings_and_opt_out_win():
    for env in ({"MALLOC_TRIM_THRESHOLD_": "0"}, {"MALLOC_MMAP_THRESHOLD_": "1"},
                {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}, {"SYMGRAD_HEAP": "system"}):
        assert heap.keep_freed(environ=env) is False
    got = _probe("keep", SYMGRAD_HEAP="system")
    assert not got["kept"] and not got["flag"]


def test_library_calls_leave_the_heap_alone():
    """``main([...])`` from Python (a caller's process) changes nothing; only the program's
    own ``main()`` (``sys.argv``) keeps freed memory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_",
                                                                      "SYMGRAD_HEAP"))}
    for call, want in (("main(['list'])", "False"), ("sys.argv = ['symgrad', 'list']; main()",
                                                      "True" if sys.platform.startswith("linux")
                                                      else "False")):
        code = f"import sys; from symgrad import heap; from symgrad.cli import main; {call}; " \
               "print(heap.kept())"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**env, "PYTHONPATH": str(ROOT)}, check=True).stdout
        assert out.strip().splitlines()[-1] == want, call
