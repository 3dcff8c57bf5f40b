"""A user's helper module for ``tests/test_capture_lines.py``: a helper in another file than
the code that calls it, holding an op the capture refuses (``cumprod``)."""

import torch


def running_total(x):
    y = x * 2
    return torch.cumprod(y, 0)  # the refused op, two files away from the forward
