import json

import symgrad as sg


def test_table_has_a_row_per_parameter_block(models):
    r = sg.verify(models["simplenet"], samples=20, seed=0)
    text = str(r)
    for row in ("value", "d/dW1", "d/db1", "d/dW2", "d/db2"):
        assert row in text
    assert "numpy worst ULPs" in text and "torch worst ULPs" in text and "verdict" in text


def test_as_dict_is_json_and_carries_the_tolerance(models):
    d = sg.verify(models["neuron"], samples=20, seed=0).as_dict()
    doc = json.loads(json.dumps(d))
    assert doc["config"]["tolerance"]["rule"].startswith("|got - exact|")
    assert doc["backends"]["torch"]["counts"]["ok"] > 0
