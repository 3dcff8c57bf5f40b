"""Table-driven code generation: a program of sympy assignments -> one Python function.

Each target (numpy, torch, mpmath) is a ``Target``: a table from sympy node to source template.
A node outside the table is named in a clear error (sympy's ``_print_not_supported`` idea).
The printer recurses over each assignment's *small* expression only; it never walks a big tree.

>>> import sympy as sp
>>> from symgrad.codegen import Target, compile_program
>>> x = sp.Symbol("x")
>>> t = Target("plain", {sp.exp: "math.exp({0})", "sqrt": "math.sqrt({0})"},
...            {"math": __import__("math")})
>>> f = compile_program([(sp.Symbol("y"), sp.exp(x) + 1)], [x], [sp.Symbol("y")], t)
>>> f([0.0])
[2.0]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import sympy as sp

from . import functions
from .errors import SymgradError

# The vocabulary every backend implements (the rows of symgrad.functions). Anything else is
# "not supported".
SUPPORTED_FUNCTIONS: tuple[type, ...] = functions.SUPPORTED + (sp.Piecewise,)
RELATIONALS = {sp.StrictGreaterThan: ">", sp.StrictLessThan: "<", sp.GreaterThan: ">=",
               sp.LessThan: "<=", sp.Equality: "==", sp.Unequality: "!="}

Template = str | Callable[[list[str]], str]


@dataclass
class Target:
    """How one backend spells each supported node.

    ``functions`` maps a sympy class to a template (``"numpy.exp({0})"``) or to a callable taking
    the printed arguments. ``constant`` turns a number into a value placed in the namespace.
    """

    name: str
    functions: Mapping[type | str, Template]
    namespace: dict = field(default_factory=dict)
    constant: Callable[[sp.Expr], object] = lambda e: float(e)
    piecewise: Callable[[list[tuple[str, str]]], str] | None = None
    logic_and: str = "&"
    logic_or: str = "|"
    # optional hook for powers, relationals and functions (Heaviside, Piecewise, ...): returns
    # the source, or None for the table's spelling (the oracle prints kink sites with it; torch
    # its fused sigmoid and NaN-safe branches)
    node: Callable[[sp.Expr, "Printer"], str | None] | None = None
    # optional hook for products: the source, or None for the plain ``(a * b)`` (numpy: a
    # factor that is exactly 0 on a flat side of a step annuls an infinite co-factor)
    mul: Callable[[sp.Expr, "Printer"], str | None] | None = None


def conditional_chain(nan: str) -> Callable[[list[tuple[str, str]]], str]:
    """A Piecewise printer for targets that evaluate one sample at a time (mpmath, arb): a
    chain of Python conditional expressions, ``nan`` where no condition holds."""
    def piecewise(pairs: list[tuple[str, str]]) -> str:
        out = nan
        for value, cond in reversed(pairs):
            out = value if cond == "True" else f"({value} if {cond} else {out})"
        return out
    return piecewise


def unsupported_functions(expr: sp.Expr) -> set[str]:
    """Names of the function nodes in ``expr`` that no backend can run."""
    bad = set()
    for f in expr.atoms(sp.Function):
        if not isinstance(f, SUPPORTED_FUNCTIONS):
            bad.add(type(f).__name__)
    if expr.has(sp.I):
        bad.add("I (imaginary unit)")
    return bad


class Printer:
    """Prints one small expression as target source; collects constants it needs."""

    def __init__(self, target: Target, names: dict[sp.Symbol, str]):
        self.t = target
        self.names = names
        self.constants: dict[sp.Expr, str] = {}
        self.values: dict[str, object] = {}

    def const(self, e: sp.Expr) -> str:
        if e.is_Integer:
            return f"({int(e)})"
        return self._named_const(e)

    def _named_const(self, e: sp.Expr) -> str:
        key = self.constants.get(e)
        if key is None:
            key = f"c{len(self.constants)}"
            self.constants[e] = key
            try:
                self.values[key] = self.t.constant(e)
            except TypeError:
                raise SymgradError(f"constant {e} is not a real number; symgrad verifies real "
                                   "losses only") from None
        return key

    def __call__(self, e) -> str:
        if e.is_Symbol:
            try:
                return self.names[e]
            except KeyError:
                raise SymgradError(f"symbol {e} is used before it is defined") from None
        if e is sp.true:
            return "True"
        if e is sp.false:
            return "False"
        if e.is_number and not isinstance(e, sp.Piecewise):
            return self.const(e)
        cls = type(e)
        if e.is_Add:
            return "(" + " + ".join(self(a) for a in e.args) + ")"
        if e.is_Mul:
            hooked = self.t.mul(e, self) if self.t.mul is not None else None
            return hooked or "(" + " * ".join(self(a) for a in e.args) + ")"
        if self.t.node is not None and (e.is_Pow or cls in RELATIONALS
                                        or isinstance(e, (sp.Function, sp.Max, sp.Min))):
            hooked = self.t.node(e, self)
            if hooked is not None:
                return hooked
        if e.is_Pow:
            return self.pow(e)
        if cls in RELATIONALS:
            return f"({self(e.lhs)} {RELATIONALS[cls]} {self(e.rhs)})"
        if isinstance(e, sp.And):
            return "(" + f" {self.t.logic_and} ".join(self(a) for a in e.args) + ")"
        if isinstance(e, sp.Or):
            return "(" + f" {self.t.logic_or} ".join(self(a) for a in e.args) + ")"
        if isinstance(e, sp.Piecewise):
            return self.t.piecewise([(self(b.expr), self(b.cond)) for b in e.args])
        for klass in cls.__mro__:
            template = self.t.functions.get(klass)
            if template is not None:
                args = [self(a) for a in e.args]
                return template(args) if callable(template) else template.format(*args)
        raise SymgradError(f"not supported: {cls.__name__} (in {e}): "
                           f"{functions.lacking(cls, self.t.name)}")

    def pow(self, e: sp.Pow) -> str:
        base, ex = e.args
        b = self(base)
        if ex == sp.Rational(1, 2):
            return self.t.functions["sqrt"].format(b)
        if ex == -1:
            return f"(1 / {b})"
        if ex.is_Integer:
            return f"({b} ** {int(ex)})"
        if "pow" in self.t.functions:
            return self.t.functions["pow"].format(b, self(ex))
        return f"({b} ** {self(ex)})"


def compile_program(assignments: Sequence[tuple[sp.Symbol, sp.Expr]], args: Sequence[sp.Symbol],
                    returns: Sequence[sp.Expr], target: Target, *,
                    fname: str = "program") -> Callable:
    """Emit and compile ``def program(X): ...; return [returns...]``.

    Arguments:
        assignments: ``(symbol, expr)`` in evaluation order.
        args: the leaf symbols; the function reads them as ``X[0], X[1], ...``.
        returns: expressions (usually symbols or numbers) to return, in order.
        target: the backend's table.
    Returns:
        The compiled function ``program(X) -> list``.
    """
    printer = Printer(target, {})
    lines = program_lines(f"def {fname}(X):", assignments, args, returns, printer)
    return build(lines, target, printer, fname)


def program_lines(header: str, assignments: Sequence[tuple[sp.Symbol, sp.Expr]],
                  args: Sequence[sp.Symbol], returns: Sequence[sp.Expr],
                  printer: Printer) -> list[str]:
    """The source lines of a straight-line program: ``header``, the leaves read as
    ``a_i = X[i]``, one ``v_i = ...`` per assignment (``printer``'s names filled in as it
    goes), and ``return [...]``."""
    names = printer.names
    lines = [header]
    for i, s in enumerate(args):
        names[s] = f"a{i}"
        lines.append(f"    a{i} = X[{i}]")
    for i, (sym, expr) in enumerate(assignments):
        src = printer(expr)
        names[sym] = f"v{i}"
        lines.append(f"    v{i} = {src}")
    lines.append("    return [" + ", ".join(printer(sp.sympify(r)) for r in returns) + "]")
    return lines


def build(lines: list[str], target: Target, printer: Printer, fname: str) -> Callable:
    """Compile generated ``lines`` (a whole ``def``) with the target's namespace."""
    source = "\n".join(lines) + "\n"
    namespace = dict(target.namespace)
    namespace.update(printer.values)
    code = compile(source, f"<symgrad {target.name} {fname}>", "exec")
    exec(code, namespace)  # noqa: S102 - our own generated source
    fn = namespace[fname]
    fn.source = source
    fn.constants = dict(printer.constants)  # sympy constant -> its name in the namespace
    return fn
