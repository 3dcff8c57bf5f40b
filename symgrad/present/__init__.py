"""How symgrad shows a model to people: notation (LaTeX / MathML of sympy expressions), the
formulas of a report page and of ``explain``, and the small LaTeX-to-MathML converter for the
rules written by hand. Everything here reads models and results; nothing below imports it."""
