"""High-precision array tables for the tensor oracle (contract: ARRAYOPS.md).

DD_OPS: double-double (~106 bits) on float64 numpy arrays, error-free matrix products on BLAS.
ARB_OPS: python-flint arb balls (rigorous radii), for certification re-checks.
"""

from .arb import ARB_OPS, ArbOps
from .dd import DD
from .ddops import DD_OPS, DDOps
from .ozaki import OzakiConfig

__all__ = ["ARB_OPS", "ArbOps", "DD", "DD_OPS", "DDOps", "OzakiConfig"]
