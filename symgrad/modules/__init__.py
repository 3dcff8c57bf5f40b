"""Verify a user's nn.Module by parameter name (``sg.verify(model, module=...)``).

``layouts`` (the GPT-2 layouts as tables) -> ``mapping`` (blocks <-> parameters, one error
before any work) -> ``glue`` (the module as a per-sample function, dropout keep-masks fed, the
fail-fast probe) -> ``paths`` (eager, torch.compile, sdpa backends) -> ``run`` (the pipeline,
results in the module's names, paths side by side).
"""

from .layouts import LAYOUTS, Layout
from .mapping import Plan, plan
from .paths import ALL_PATHS, PATHS
from .run import ModuleOptions, PathsReport, compare_paths, module_torch_fn, verify_module

__all__ = ["ALL_PATHS", "LAYOUTS", "Layout", "ModuleOptions", "PATHS", "PathsReport", "Plan",
           "compare_paths", "module_torch_fn", "plan", "verify_module"]
