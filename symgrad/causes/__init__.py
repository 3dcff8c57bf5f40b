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
``backward`` (a hand-written backward's own bugs, named from the failing block's entries: a
leak where the output does not depend, no gradient reaching a block, float32 arithmetic in a
float64 backward), ``classify`` (``classify_failure``).

>>> by_kind("domain", "torch", False, float("nan"), float("nan")).name
'domain'
"""

from ..logistic import adjoint_cancellation
from .backward import BACKWARD, Detector, block_entries, named
from .catalogue import (CATALOGUE, Entry, _bce_clamp, _bce_log_clamp, _lowered, _promotion,
                        _saturated_logit, _softplus_threshold, bce_sites)
from .classify import classify_failure, first_split
from .forms import (STABLE_OPS, guard_in, precision_loss, sigmoid_arguments, softplus_arguments,
                    stable_ops)
from .kinds import (DERIVATIVE_WRONG, OWN, RANDOM, SECOND_DERIVATIVE_WRONG, SPLIT, Cause, Context,
                    Entries, as_user_code, by_kind, function_differs, refine)

__all__ = ["BACKWARD", "CATALOGUE", "Cause", "Context", "DERIVATIVE_WRONG", "Detector", "Entries",
           "Entry", "OWN", "RANDOM", "SECOND_DERIVATIVE_WRONG", "SPLIT", "STABLE_OPS",
           "adjoint_cancellation", "as_user_code", "bce_sites", "block_entries", "by_kind",
           "classify_failure", "first_split", "function_differs", "guard_in", "named",
           "precision_loss", "refine", "sigmoid_arguments", "softplus_arguments", "stable_ops"]
