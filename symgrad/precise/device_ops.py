"""The oracle's double-double table with its general products on a torch device.

``DeviceDDOps`` is ``DD_OPS`` (``symgrad.precise.ddops``) whose Ozaki products, the oracle's
GEMMs (``matmul3``), run as torch float64 GEMMs on ``device`` (``ozaki_torch``); every other
operation, and a product where one factor only selects, stays on numpy. What it gives: the
numpy table's bits but the scheme's one rounded GEMM's last bits of lo (``ozaki_torch``).
``VerifyConfig.oracle_device`` (and ``--device cuda``) selects it (``tensor.tables.oracle_ops``).

Example:
    >>> import numpy as np
    >>> from symgrad.precise.dd import DD
    >>> t = DeviceDDOps("cpu")
    >>> c = t.matmul3(DD(np.full((1, 2, 3), 0.5)), DD(np.full((1, 3, 2), 2.0**-70)))
    >>> bool(c.hi[0, 0, 0] == 1.5 * 2.0**-70), t.device
    (True, 'cpu')
"""

from __future__ import annotations

from .dd import DD
from .ddops import DDOps
from .ozaki import OzakiConfig
from .ozaki_torch import dd_matmul_torch


class DeviceDDOps(DDOps):
    """``DDOps`` with ``product`` (every general Ozaki GEMM) on torch's ``device``."""

    def __init__(self, device: str, matmul: OzakiConfig = OzakiConfig(), samples: int = 1):
        super().__init__(matmul, samples)
        self.device = device

    def product(self, a: DD, b: DD) -> DD:
        return dd_matmul_torch(a, b, self.matmul_config, device=self.device)
