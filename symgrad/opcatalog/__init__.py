"""``symgrad ops``: torch's own differentiable operators verified against exact derivatives.

A catalogue (``table``) of torch operators with their documented definitions in sympy; each is
verified through ``sg.verify`` at edge-seeking inputs (``inputs``) in float64/float32/bfloat16/
float16, first order and Hessian-vector products (``run``), with named causes (``known``) and
``torch.autograd.gradcheck`` beside it; ``report`` writes ops.md/.html/.json with reproducers.
"""

from .run import DTYPES, Finding, OpsConfig, OpsReport, Row, run_ops
from .table import CATALOGUE, Arg, Op, by_name

__all__ = ["CATALOGUE", "DTYPES", "Arg", "Finding", "Op", "OpsConfig", "OpsReport", "Row",
           "by_name", "run_ops"]
