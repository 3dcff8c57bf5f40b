"""A module whose loss is undefined at the example the user gave: refused in one line.

``sg.verify(module=m, inputs=x, ...)`` checks the example and points around it. Where the exact
loss at the example itself is undefined (the oracle's value is NaN: 0/0 in a masked mean over a
mask row with no True, inf - inf from an infinite input, a log of a negative number), no backend
can be right or wrong there: the run read "FAIL" above lines each saying "the model is
undefined at the sample ...: not a backend error" (newuser13), as a drawn model's run did
before ``tensor/undefined.py`` (which refuses samples drawn from declared domains; a module's
example is the user's own point, so it is refused here, after the run, in the module's words).
A loss undefined only at some points around the example keeps its per-entry "domain" lines.

>>> import numpy as np
>>> from types import SimpleNamespace as S
>>> from symgrad.compare import DOMAIN, OK
>>> r = S(comparisons={"module": S(status=np.array([[DOMAIN, DOMAIN], [OK, OK]]))})
>>> try:
...     refuse_undefined_example(r, "verify(module=Pool)")
... except Exception as e:
...     print(str(e)[:70])
verify(module=Pool): the loss is undefined at the example (its exact v
"""

from __future__ import annotations

import numpy as np

from ..compare import DOMAIN
from ..errors import SymgradError


def refuse_undefined_example(result, who: str) -> None:
    """Raise ``SymgradError`` where the loss value (column 0) of the example (row 0) is
    undefined in any comparison of ``result``.

    Arguments:
        result: the run's ``Result`` (its ``comparisons``' status arrays, samples x outputs).
        who: how the message names the call (``verify(module=Pool)``).
    Returns:
        None (the loss is defined at the example).
    """
    for comp in result.comparisons.values():
        status = np.asarray(comp.status)
        if status.ndim == 2 and status.shape[0] and status.shape[1] and status[0, 0] == DOMAIN:
            raise SymgradError(
                f"{who}: the loss is undefined at the example (its exact value is NaN there: "
                "0/0, inf - inf, a log or square root of a negative number), so no gradient "
                "there can be right or wrong; give inputs= (and targets=) where it is defined, "
                "e.g. finite inputs, a mask with a True in every row it averages over")
