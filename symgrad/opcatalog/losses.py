"""The catalogue's loss rows (torch.nn.functional losses), each from its documented formula.

>>> from symgrad.opcatalog.losses import LOSSES
>>> LOSSES[0].call
'F.mse_loss(x, t)'
"""

from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import log1p

from .rows import EPS6, V, C, Arg, Op, R, dot, logsumexp, mean, norm2, pick, softplus, unsupported


def _loss(name, call, f, args, *, kinks=(), notes=""):
    return Op(name, "loss", call, f, tuple(args), kinks, notes)


X, T, P = Arg("x", V), Arg("t", V, "real", False), Arg("p", V, "prob")
L01 = Arg("t", V, "label01", False)
CLS = Arg("t", (), "class3", False)
PM1 = Arg("s", V, "pm1", False)


def _huber(e, delta):
    return sp.Piecewise((e**2 / 2, sp.Abs(e) < delta), (delta * (sp.Abs(e) - delta / 2), True))


def _smooth_l1(e, beta):
    return sp.Piecewise((e**2 / (2 * beta), sp.Abs(e) < beta), (sp.Abs(e) - beta / 2, True))


def _ce_smoothed(x, t, eps):
    lse = logsumexp(x)
    n = len(x)
    return (1 - eps) * (lse - pick(x, t)) + eps / n * sp.Add(*[lse - xi for xi in x])


def _cos(a, b):
    return dot(a, b) / sp.sqrt(dot(a, a) * dot(b, b))


def _triplet(x, y, z):
    a, p, n = x, y, z
    d = lambda u, v: norm2([ui - vi + R(1, 10**6) for ui, vi in zip(u, v)])  # noqa: E731
    return sp.Max(d(a, p) - d(a, n) + 1, 0)


LOSSES = [
    _loss("mse_loss", "F.mse_loss(x, t)", lambda x, t: mean([(a - b) ** 2 for a, b in zip(x, t)]),
          (X, T)),
    _loss("mse_loss_sum", "F.mse_loss(x, t, reduction='sum')",
          lambda x, t: sp.Add(*[(a - b) ** 2 for a, b in zip(x, t)]), (X, T)),
    _loss("l1_loss", "F.l1_loss(x, t)", lambda x, t: mean([sp.Abs(a - b) for a, b in zip(x, t)]),
          (X, T)),
    _loss("smooth_l1_loss", "F.smooth_l1_loss(x, t)",
          lambda x, t: mean([_smooth_l1(a - b, 1) for a, b in zip(x, t)]), (X, T)),
    _loss("smooth_l1_loss_beta", "F.smooth_l1_loss(x, t, beta=0.5)",
          lambda x, t: mean([_smooth_l1(a - b, R(1, 2)) for a, b in zip(x, t)]), (X, T)),
    _loss("huber_loss", "F.huber_loss(x, t)",
          lambda x, t: mean([_huber(a - b, 1) for a, b in zip(x, t)]), (X, T)),
    _loss("huber_loss_delta", "F.huber_loss(x, t, delta=2.0)",
          lambda x, t: mean([_huber(a - b, 2) for a, b in zip(x, t)]), (X, T)),
    _loss("binary_cross_entropy", "F.binary_cross_entropy(p, t)",
          lambda p, t: mean([-(b * sp.log(a) + (1 - b) * log1p(-a)) for a, b in zip(p, t)]),
          (P, L01), notes="documented: -(t log p + (1 - t) log(1 - p)); torch clamps log at -100"),
    _loss("bce_with_logits", "F.binary_cross_entropy_with_logits(x, t)",
          lambda x, t: mean([(1 - b) * softplus(a) + b * softplus(-a) for a, b in zip(x, t)]),
          (X, L01)),
    _loss("bce_with_logits_pos_weight",
          "F.binary_cross_entropy_with_logits(x, t, pos_weight=x.new_full((3,), 2.0))",
          lambda x, t: mean([(1 - b) * softplus(a) + 2 * b * softplus(-a)
                             for a, b in zip(x, t)]), (X, L01)),
    _loss("cross_entropy", "F.cross_entropy(x, t)",
          lambda x, t: logsumexp(x) - pick(x, t), (Arg("x", C), CLS)),
    _loss("cross_entropy_smoothing", "F.cross_entropy(x, t, label_smoothing=0.1)",
          lambda x, t: _ce_smoothed(x, t, R(1, 10)), (Arg("x", C), CLS),
          notes="(1 - e)(lse - x_t) + e/C sum_c (lse - x_c)"),
    _loss("cross_entropy_probs", "F.cross_entropy(x, q)",
          lambda x, q: sp.Add(*[qi * (logsumexp(x) - xi) for xi, qi in zip(x, q)]),
          (Arg("x", C), Arg("q", C, "label01", False)), notes="probability targets"),
    _loss("nll_loss", "F.nll_loss(x, t)", lambda x, t: -pick(x, t), (Arg("x", C), CLS)),
    _loss("kl_div", "F.kl_div(x, q, reduction='batchmean')",
          lambda x, q: sp.Add(*[b * (sp.log(b) - a) for a, b in zip(x, q)]) / 3,
          (X, Arg("q", V, "prob", False)), notes="sum q (log q - x) / input.size(0)"),
    _loss("kl_div_log_target", "F.kl_div(x, q, reduction='sum', log_target=True)",
          lambda x, q: sp.Add(*[sp.exp(b) * (b - a) for a, b in zip(x, q)]),
          (X, Arg("q", V, "real", False))),
    _loss("poisson_nll_loss", "F.poisson_nll_loss(x, t)",
          lambda x, t: mean([sp.exp(a) - b * a for a, b in zip(x, t)]),
          (Arg("x", V, "small"), Arg("t", V, "pos", False)), notes="log_input=True"),
    _loss("poisson_nll_loss_linear", "F.poisson_nll_loss(x, t, log_input=False)",
          lambda x, t: mean([a - b * sp.log(a + R(1, 10**8)) for a, b in zip(x, t)]),
          (Arg("x", V, "pos"), Arg("t", V, "pos", False)), notes="x - t log(x + eps), eps=1e-8"),
    _loss("gaussian_nll_loss", "F.gaussian_nll_loss(x, t, v)",
          lambda x, t, v: mean([(sp.log(sp.Max(c, EPS6))
                                 + (a - b) ** 2 / sp.Max(c, EPS6)) / 2
                                for a, b, c in zip(x, t, v)]),
          (X, T, Arg("v", V, "pos")), kinks=(1e-6,),
          notes="(log max(var, eps) + (x - t)^2 / max(var, eps)) / 2, eps=1e-6"),
    _loss("cosine_embedding_loss", "F.cosine_embedding_loss(x[None], y[None], s.reshape(1))",
          lambda x, y, s: sp.Piecewise((1 - _cos(x, y), s > 0), (sp.Max(_cos(x, y), 0), True)),
          (X, Arg("y", V), Arg("s", (), "pm1", False)), notes="margin=0"),
    _loss("margin_ranking_loss", "F.margin_ranking_loss(x, y, s, margin=0.5)",
          lambda x, y, s: mean([sp.Max(-c * (a - b) + R(1, 2), 0) for a, b, c in zip(x, y, s)]),
          (X, Arg("y", V), PM1)),
    _loss("hinge_embedding_loss", "F.hinge_embedding_loss(x, s)",
          lambda x, s: mean([sp.Piecewise((a, c > 0), (sp.Max(1 - a, 0), True))
                             for a, c in zip(x, s)]), (X, PM1), kinks=(1.0,)),
    _loss("soft_margin_loss", "F.soft_margin_loss(x, s)",
          lambda x, s: mean([softplus(-c * a) for a, c in zip(x, s)]), (X, PM1)),
    _loss("multilabel_soft_margin_loss", "F.multilabel_soft_margin_loss(x[None], t[None])",
          lambda x, t: mean([b * softplus(-a) + (1 - b) * softplus(a) for a, b in zip(x, t)]),
          (X, L01)),
    _loss("multi_margin_loss", "F.multi_margin_loss(x[None], t.reshape(1))",
          lambda x, t: sp.Add(*[sp.Piecewise((0, sp.Eq(t, i)),
                                             (sp.Max(1 - pick(x, t) + xi, 0), True))
                                for i, xi in enumerate(x)]) / 3, (Arg("x", C), CLS),
          notes="sum_{i != t} max(0, 1 - x_t + x_i) / C"),
    _loss("triplet_margin_loss", "F.triplet_margin_loss(x[None], y[None], z[None])",
          _triplet, (Arg("x", V), Arg("y", V), Arg("z", V)),
          notes="max(d(a, p) - d(a, n) + 1, 0), d = ||u - v + eps||_2, eps=1e-6"),
    unsupported("ctc_loss", "loss", "F.ctc_loss(...)",
                 "a sum over all alignments (a dynamic programme over a variable-length "
                 "label sequence); expressible only unrolled for one fixed small case"),
]
