"""Root causes: every disagreement gets a class and a one-line explanation.

The first split of every failure: **function differs** (the loss value of the same backend at the
same sample disagrees beyond its bound: the code computes a different function, and its gradient
follows it) versus **derivative wrong** (the value agrees, the gradient does not: the derivative
of the same function is wrong). Before that split, what is known: the failure kind (domain,
overflow, kink, non-finite), and a catalogue of behaviours symgrad found in torch (BCELoss clamps,
the softplus threshold, saturated logits, integer tensors promoted to float32), each recognised
from data the pipeline hands over in a ``Context`` (exact intermediates at the sample, the value's
status, the ops that promoted an integer tensor).

This package imports nothing of the pipeline's. Its modules, one job each: ``kinds``
(``Cause``, ``Context``, the causes a failure's kind implies, the first split's wording),
``catalogue`` (the torch behaviours and their detectors), ``forms`` (how the model is written:
stable ops, a hand-written softplus or sigmoid, guard constants, the precision-loss cause),
``classify`` (``classify_failure``).

>>> by_kind("domain", "torch", False, float("nan"), float("nan")).name
'domain'
"""

from ..logistic import adjoint_cancellation
from .catalogue import (CATALOGUE, Entry, _bce_clamp, _bce_log_clamp, _lowered, _promotion,
                        _saturated_logit, _softplus_threshold, bce_sites)
from .classify import classify_failure, first_split
from .forms import (STABLE_OPS, guard_in, precision_loss, sigmoid_arguments, softplus_arguments,
                    stable_ops)
from .kinds import (DERIVATIVE_WRONG, OWN, RANDOM, SECOND_DERIVATIVE_WRONG, SPLIT, Cause, Context,
                    by_kind, function_differs, refine)

__all__ = ["CATALOGUE", "DERIVATIVE_WRONG", "OWN", "RANDOM", "SECOND_DERIVATIVE_WRONG", "SPLIT",
           "STABLE_OPS", "Cause", "Context", "Entry", "adjoint_cancellation", "bce_sites",
           "by_kind", "classify_failure", "first_split", "function_differs", "guard_in",
           "precision_loss", "refine", "sigmoid_arguments", "softplus_arguments", "stable_ops"]
