"""The oracle's double-double table with its general products on a torch device.

``DeviceDDOps`` is ``DD_OPS`` (``symgrad.precise.ddops``) whose Ozaki products, the oracle's
GEMMs (``matmul3``) from ``FROM`` multiply-adds, run as torch float64 GEMMs on ``device``
(``ozaki_torch``); every other operation, a smaller product, and one where a factor only
selects, stays on numpy. What it gives: the
numpy table's bits but the scheme's one rounded GEMM's last bits of lo (``ozaki_torch``).
``VerifyConfig.oracle_device`` (and ``--device cuda``) selects it (``tensor.tables.oracle_ops``).

Example:
    >>> import numpy as np
    >>> from symgrad.precise.dd import DD
    >>> t = DeviceDDOps("cpu")
    >>> c = t.matmul3(DD(np.full((1, 200, 300), 0.5)), DD(np.full((1, 300, 20), 2.0**-70)))
    >>> bool(c.hi[0, 0, 0] == 150 * 2.0**-70), t.device
    (True, 'cpu')
"""

from __future__ import annotations

from .dd import DD
from .ddops import DDOps
from .ozaki import OzakiConfig
from .ozaki_torch import dd_matmul_torch


FROM = 1 << 20  # multiply-adds from which a product runs on the device: below, moving it
#  there and ~20 kernel launches cost more than numpy's product (a scalar model's 1 x 1 ones)


class DeviceDDOps(DDOps):
    """``DDOps`` with ``product`` (every general Ozaki GEMM) on torch's ``device``."""

    def __init__(self, device: str, matmul: OzakiConfig = OzakiConfig(), samples: int = 1):
        super().__init__(matmul, samples)
        self.device = device

    def product(self, a: DD, b: DD) -> DD:
        bt, m, k = a.shape
        if bt * m * k * b.shape[2] < FROM:  # small: numpy's (its very bits), no transfers
            return super().product(a, b)
        return dd_matmul_torch(a, b, self.matmul_config, device=self.device)
