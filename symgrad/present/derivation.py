"""What the report's scalar formulas (``present/formulas``) still read of a plain model's
derivation, now from its tensor program: the textbook adjoints and the layer rules
(``present/step_derivation``, ``present/layer_derivation``, on the steps
``symgrad.tensor.front.to_program`` carries). ``explain`` no longer reads this module; it goes
when the report's formulas read the program too (issue 17, step 5).

>>> from symgrad import zoo
>>> [str(rhs) for _, rhs in textbook_adjoints(zoo.get("neuron"))][1]
'a - y'
"""

from __future__ import annotations

import sympy as sp

from ..graph import Graph, Node
from ..model import Model
from ..tensor.front import program_of
from . import step_derivation
from .explanation import Section
from .layer_derivation import layer_rules
from .layer_derivation import layer_sections as _layer_sections

__all__ = ["group", "has_matrix", "layer_rules", "layer_sections", "textbook_adjoints"]


def _steps(model: Model) -> step_derivation.Steps:
    program = program_of(model)
    return step_derivation.steps_of(program.textbook_program or program)


def textbook_adjoints(model: Model) -> list[tuple[sp.Basic, sp.Expr]]:
    """dL/dv for every step v and parameter of the textbook program, simplified
    (``step_derivation.textbook_adjoints``)."""
    return step_derivation.textbook_adjoints(_steps(model))


def group(node: Node):
    """The ``ops`` call on a matrix that made a graph step, or None."""
    return getattr(node.symbol, "group", None)


def has_matrix(graph: Graph) -> bool:
    """Whether some step of ``graph`` came from an ``ops`` call on a matrix (not 1 x 1)."""
    return any(group(n) is not None and group(n).shape != (1, 1) for n in graph.nodes)


def layer_sections(model: Model, graph: Graph, values=None) -> list[Section]:
    """The layer view of ``model`` (``layer_derivation.layer_sections`` on its program; the
    ``graph`` argument is the report's, read from the same model)."""
    return _layer_sections(_steps(model), values)
