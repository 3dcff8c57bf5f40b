"""``symgrad explain --at`` with values that are not float64 numbers as typed (newuser6, a
teacher's point x1=1, x2=-2, w1=0.5, w2=0.3, b=0.1, meant to give z = 0: the page showed
z = 2.77556e-17, exact at the float64 numbers 0.3 and 0.1 really are, and nothing said so).
stderr now says which values were read as which float64 numbers; nothing where all are exact."""

from __future__ import annotations

from symgrad.cli import main


def test_an_inexact_at_value_is_named_with_its_float64_number(capsys):
    assert main(["explain", "neuron", "--at", "x=1.1,w=2.2,b=0,y=1"]) == 0
    err = capsys.readouterr().err
    assert ("symgrad: note: --at reads x=1.1, w=2.2 as the float64 numbers "
            "1.1000000000000000888 and 2.2000000000000001776; the values shown are exact at "
            "them") in err, err


def test_exact_at_values_get_no_note(capsys):
    assert main(["explain", "neuron", "--at", "x=1.5,w=-2,b=0.25,y=1"]) == 0
    assert "note:" not in capsys.readouterr().err
