"""Distributed-noise uplift training (``--noise-model distributed-secagg``): whitened heads, one full-batch step per
SecAgg+ round.

Why: with local noise (the default) every partner runs DP-SGD and adds the full noise to its own update, because the
coordinator sees each update; at epsilon 1 that noise is what stops the model (docs/uplift.md: any faster optimiser
took back in noise what it gained in steps). Under SecAgg+ the coordinator sees only the sum of the partners'
clipped gradient sums, each carrying a discrete-Gaussian *share* of the noise, so the sum carries the noise once
(sqrt(K) less than K local noises). With that little noise the limit is the number of steps, and a preconditioner
removes it: the hinge basis is badly conditioned (a few directions carry most of the variance), so plain gradient
steps crawl along the others. Here the heads are trained on *whitened* inputs ``(phi(x) - mean) M`` with ``M``
from the pooled covariance of the basis, so every direction the data spans moves at the same pace.

The job, in order:

1. **Whitening statistics** (one local Gaussian release per partner, like the evaluation): per arm the training
   customers, the sum of the basis vectors and the sum of their outer products, each customer's vector clipped to
   :data:`GRAM_CLIP` and the three parts weighted (:func:`gram_vector`; L2 1 per customer). The coordinator turns the
   pooled noisy sums into the mean, ``M`` and the per-arm counts (:meth:`Whitening.from_gram`, post-processing).
2. **Rounds**: every partner sends, through SecAgg+, the sum of its training customers' per-customer gradients of
   the whitened heads' log loss, each clipped to L2 ``C`` (Opacus per-sample gradients), plus its discrete-Gaussian
   share (OpenDP, OS entropy; :mod:`fedinsight.privacy.distributed_dp`). Clipping happens in the whitened coordinates
   the noise is added in, so the sensitivity is ``C`` whatever ``M`` the coordinator sends -- as long as the
   arithmetic stays finite: a partner refuses a round whose whitening or weights exceed public bounds
   (:data:`MAX_ENTRY`), before its budget is spent, and computes in float64, so no customer's values can turn the
   sum into NaN or infinity (whose refusal would tell the coordinator that such a customer exists). The coordinator
   steps each arm's head by ``secure_lr`` x (summed gradient / the arm's noisy count) and keeps the released average
   (``--ema`` or ``--tail``, as in local mode).
3. **Release**: the averaged whitened heads converted back to the ordinary model's separate heads on the hinge
   basis (:func:`to_model_weights`; exact, post-processing), so evaluation, policy, economics, the model file and
   the offer export are the same as in local mode.

Everything a partner needs to check the protocol (grid, shares) is a function of public numbers: the options, the
partner count and the model's shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedinsight.core.errors import ConfigError
from fedinsight.federation.secagg import trust_text
from fedinsight.models.uplift import CENTRE, Hinges
from fedinsight.privacy.distributed_dp import DistributedNoise
from fedinsight.tasks.uplift.features import FEATURES
from fedinsight.tasks.uplift.options import UpliftOptions

SECURE_PHASE = "secagg"
MECHANISM = "dp-gd+secagg"
"""The manifest's and ledger's name of a distributed-noise training round (one full-batch step)."""
GRAM_CLIP = 1.5
"""Each customer's basis vector enters the whitening statistics scaled to at most this L2 length (about the 90th
percentile of the hinge basis's lengths on the synthetic audience; the worst case, :func:`basis_bound`, is 2.7): the
outer products' noise scales with its square, and a whitening from slightly shrunk outliers is as good."""
GRAM_WEIGHTS = (0.3, 0.3, math.sqrt(1.0 - 0.3**2 - 0.3**2))
"""How one customer's unit of L2 sensitivity is shared between its arm indicator, its scaled basis vector and the
upper triangle of its scaled outer product (squares sum to 1): the covariance needs the precision, the counts and the
mean (tens of thousands of customers) do not."""
GRAM_SENSITIVITY = 1.0
"""L2 per customer of :func:`gram_vector`: ``a`` x the arm indicator, ``b`` x the clipped basis vector / GRAM_CLIP
and ``c`` x the upper triangle of its outer product / GRAM_CLIP^2 (at most its Frobenius norm), a^2 + b^2 + c^2 =
1."""
FLOOR = 0.01
"""Eigenvalues of the pooled covariance below this share of the largest are raised to it before inverting: noise in
the released sums swamps the smallest directions, and whitening them would amplify noise (a throw-away probe on
validation customers: floors 0.001-0.03 within a point of each other)."""
MAX_ENTRY = 1e6
"""Largest absolute value a partner accepts in the whitening's mean and matrix and in the heads' weights of a round
(public; the job's own whitening has entries of order 10 and weights of order 1). With every input in [0, 1], the
basis bounded by :func:`basis_bound` and these bounds, every logit and per-customer gradient stays far inside float64,
whatever the coordinator sends."""
RMS = 1.2
"""Root mean square length of a whitened basis vector (``M`` is scaled to it): about the hinge basis's own (median
1.5 with the bias), so the clipping norm of local mode clips about as many customers."""


def basis_bound(knots: tuple[float, ...]) -> float:
    """Public L2 bound of one customer's hinge basis vector: each feature in [0, 1] gives ``x - CENTRE`` (at most
    max(CENTRE, 1 - CENTRE)) and ``relu(x - k)`` (at most 1 - k) per knot (the scale :data:`GRAM_CLIP` is set
    against, and what keeps a round's arithmetic finite with :data:`MAX_ENTRY`)."""
    per_feature = max(CENTRE, 1.0 - CENTRE) ** 2 + sum((1.0 - k) ** 2 for k in knots)
    return math.sqrt(len(FEATURES) * per_feature)


def basis(x: np.ndarray, knots: tuple[float, ...]) -> np.ndarray:
    """The model's own hinge basis (:class:`fedinsight.models.uplift.Hinges`), in float64: the whitened heads and the
    model they convert to must see the same columns."""
    import torch

    with torch.no_grad():
        return Hinges(tuple(knots))(torch.as_tensor(np.asarray(x, dtype=np.float64))).numpy()


def width(options: UpliftOptions) -> int:
    """Columns of the hinge basis: each feature centred, plus one hinge per knot."""
    return len(FEATURES) * (len(options.knot_values) + 1)


def gram_length(options: UpliftOptions) -> int:
    """Length of :func:`gram_vector`: a count per arm, the basis's sums, the upper triangle of its outer products."""
    d = width(options)
    return len(options.arms) + d + d * (d + 1) // 2


def gram_vector(x: np.ndarray, arm: np.ndarray, options: UpliftOptions) -> np.ndarray:
    """One partner's exact whitening statistics (L2 :data:`GRAM_SENSITIVITY` per customer): ``a`` x its customers per
    arm, ``b`` x the sum of basis vectors clipped to :data:`GRAM_CLIP` / GRAM_CLIP, ``c`` x the upper triangle of the
    sum of their outer products / GRAM_CLIP^2 (:data:`GRAM_WEIGHTS`)."""
    a, b, c = GRAM_WEIGHTS
    phi = basis(x, options.knot_values)
    norms = np.linalg.norm(phi, axis=1, keepdims=True)
    phi = phi * np.minimum(1.0, GRAM_CLIP / np.maximum(norms, 1e-12)) / GRAM_CLIP
    rows, cols = np.triu_indices(phi.shape[1])
    counts = np.bincount(np.asarray(arm, dtype=np.int64), minlength=len(options.arms)).astype(np.float64)
    return np.concatenate([a * counts, b * phi.sum(axis=0), c * (phi.T @ phi)[rows, cols]])


@dataclass(frozen=True)
class Whitening:
    """The public preconditioner every partner applies: ``(phi(x) - mean) @ matrix``, and the per-arm noisy training
    counts the coordinator divides each arm's summed gradient by."""

    mean: np.ndarray
    matrix: np.ndarray
    counts: np.ndarray

    @classmethod
    def from_gram(cls, total: np.ndarray, options: UpliftOptions) -> Whitening:
        """From the pooled noisy :func:`gram_vector` sums (post-processing): mean and covariance of the basis,
        eigenvalues floored at :data:`FLOOR` x the largest, inverse square root, scaled to :data:`RMS`."""
        total = np.asarray(total, dtype=np.float64)
        if total.size != gram_length(options):
            raise ConfigError(f"whitening statistics of {total.size} numbers do not fit this job "
                              f"({gram_length(options)} expected)")
        arms, d = len(options.arms), width(options)
        a, b, c = GRAM_WEIGHTS
        counts = total[:arms] / a
        n = float(counts.sum())
        if not n >= 1.0:
            raise ConfigError("the pooled noisy count of training customers is below 1: too few customers to train "
                              "with distributed noise at this epsilon")
        mean = total[arms:arms + d] * GRAM_CLIP / b / n
        upper = np.zeros((d, d))
        upper[np.triu_indices(d)] = total[arms + d:] * GRAM_CLIP**2 / c
        second = upper + np.triu(upper, 1).T
        cov = second / n - np.outer(mean, mean)
        eig, vec = np.linalg.eigh((cov + cov.T) / 2)
        top = max(float(eig.max()), 1e-12)
        floored = np.maximum(eig, FLOOR * top)
        inv_sqrt = vec @ np.diag(floored ** -0.5) @ vec.T
        # mean squared length of a whitened vector; noise can make small eigenvalues negative: they count as 0
        spread = float(np.sum(np.maximum(eig, 0.0) / floored))
        matrix = inv_sqrt * RMS / math.sqrt(max(spread, 1e-12))
        return cls(mean, matrix, np.maximum(counts, 1.0))

    def apply(self, x: np.ndarray, options: UpliftOptions) -> np.ndarray:
        return (basis(x, options.knot_values) - self.mean) @ self.matrix

    def as_config(self) -> dict[str, list[float]]:
        """What travels to the partners in each round's config (public: post-processing of a DP release)."""
        return {"whiten-mean": [float(v) for v in self.mean], "whiten-matrix": [float(v) for v in self.matrix.ravel()]}

    @classmethod
    def from_config(cls, config: dict[str, Any], options: UpliftOptions) -> Whitening:
        d = width(options)
        try:
            mean = np.asarray(config["whiten-mean"], dtype=np.float64)
            matrix = np.asarray(config["whiten-matrix"], dtype=np.float64).reshape(d, d)
        except (KeyError, TypeError, ValueError):
            raise ConfigError("a distributed-noise uplift round lacks its whitening (whiten-mean, whiten-matrix of "
                              f"{d} and {d}x{d} numbers)") from None
        if mean.shape != (d,) or not bounded(mean) or not bounded(matrix):
            raise ConfigError("a distributed-noise uplift round's whitening is malformed or outside the public bound "
                              f"(every entry finite, at most {MAX_ENTRY:g} in size); refused before any budget")
        return cls(mean, matrix, np.ones(len(options.arms)))


def bounded(values: np.ndarray) -> bool:
    """Every entry finite and at most :data:`MAX_ENTRY` in size (a public check: it reads no customer)."""
    values = np.asarray(values, dtype=np.float64)
    return bool(np.isfinite(values).all() and np.abs(values).max(initial=0.0) <= MAX_ENTRY)


def coordinates(options: UpliftOptions) -> int:
    """Length of the secure vector: every arm's head (bias and one weight per whitened column)."""
    return len(options.arms) * (width(options) + 1)


def encoding(options: UpliftOptions, partners: int) -> DistributedNoise:
    """The job's SecAgg+ grid and noise shares (ConfigError, naming what to change, if no exact grid fits)."""
    if not options.distributed:
        raise ConfigError("distributed noise belongs to jobs with --noise-model distributed-secagg")
    plan = options.plan()
    shares = options.noise_shares(partners)  # trust settings: their own error, not the grid's advice below
    try:
        return DistributedNoise.for_job(partners=partners, honest=shares,
                                        noise_multiplier=plan.noise_multiplier, clip=plan.max_grad_norm,
                                        max_customers=options.max_customers, coordinates=coordinates(options),
                                        rounds=options.rounds)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (for uplift: lower --max-customers, now {options.max_customers}, to the largest "
                          "partner's training customers, or use --noise-model local)") from None


def trust_model(options: UpliftOptions, partners: int) -> str:
    """The trust model in words (summary.json, the ledger's charge descriptions)."""
    if not options.distributed:
        return ("local noise: every partner runs DP-SGD and adds the full Gaussian noise to its own update (no trust "
                "in anyone needed)")
    return trust_text(partners, options.honest_partners, options.max_dropouts)


def initial(options: UpliftOptions) -> np.ndarray:
    """The whitened heads' starting point: every weight 0 (public; "no offer changes anything")."""
    return np.zeros(coordinates(options))


def heads(vector: np.ndarray, options: UpliftOptions) -> tuple[np.ndarray, np.ndarray]:
    """(bias per arm, weights arms x whitened columns) from the flat secure vector (ConfigError if it does not fit)."""
    flat = np.asarray(vector, dtype=np.float64).ravel()
    if flat.size != coordinates(options):
        raise ConfigError(f"a vector of {flat.size} numbers does not fit the whitened uplift heads "
                          f"({coordinates(options)} expected)")
    if not bounded(flat):
        raise ConfigError(f"the whitened uplift heads must be finite and at most {MAX_ENTRY:g} in size; refused")
    table = flat.reshape(len(options.arms), width(options) + 1)
    return table[:, 0], table[:, 1:]


def gradient_sum(vector: np.ndarray, whitening: Whitening, x: np.ndarray, arm: np.ndarray, converted: np.ndarray,
                 options: UpliftOptions) -> np.ndarray:
    """The sum over the partner's training customers of each one's log-loss gradient (its own arm's head only),
    clipped to L2 ``options.clip`` in the whitened coordinates; flattened like :func:`heads`. Per-customer gradients
    come from Opacus (:func:`fedinsight.privacy.dpsgd.clipped_gradient_sum`)."""
    import torch
    from torch import nn

    from fedinsight.models.uplift import uplift_loss
    from fedinsight.privacy.dpsgd import clipped_gradient_sum

    bias, weight = heads(vector, options)
    if not (bounded(whitening.mean) and bounded(whitening.matrix)):
        raise ConfigError(f"the whitening must be finite and at most {MAX_ENTRY:g} in size; refused")
    # float64 throughout: with the public bounds above no customer's values can overflow it (float32 could)
    model = nn.Linear(weight.shape[1], weight.shape[0]).double()
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(weight, dtype=torch.float64))
        model.bias.copy_(torch.as_tensor(bias, dtype=torch.float64))
    inputs = whitening.apply(x, options)
    data = (torch.as_tensor(inputs, dtype=torch.float64), torch.as_tensor(np.asarray(arm, dtype=np.int64)),
            torch.as_tensor(np.asarray(converted, dtype=np.float64)))
    flat = clipped_gradient_sum(model, data, uplift_loss, max_grad_norm=options.clip).numpy().astype(np.float64)
    # Opacus lists weight (arms x d) then bias (arms): reorder to the secure vector's (bias, weights) per arm
    arms, d = weight.shape
    grad_w, grad_b = flat[:arms * d].reshape(arms, d), flat[arms * d:]
    return np.column_stack([grad_b, grad_w]).ravel()


def step(vector: np.ndarray, total: np.ndarray, whitening: Whitening, options: UpliftOptions) -> np.ndarray:
    """One full-batch step: each arm's head moves by ``secure_lr`` x its summed noisy gradient / its noisy count."""
    table = np.asarray(vector, dtype=np.float64).reshape(len(options.arms), -1)
    grads = np.asarray(total, dtype=np.float64).reshape(table.shape)
    return (table - options.secure_lr * grads / whitening.counts[:, None]).ravel()


def to_model_weights(vector: np.ndarray, whitening: Whitening, options: UpliftOptions) -> dict[str, np.ndarray]:
    """The whitened heads as the ordinary model's separate heads on the hinge basis (exact: ``b + w . (phi - mean) M
    = (b - (M w) . mean) + (M w) . phi``), in :class:`fedinsight.models.uplift.UpliftNet`'s state-dict names."""
    bias, weight = heads(vector, options)
    plain = weight @ whitening.matrix.T
    return {"arm_heads.weight": plain.astype(np.float32),
            "arm_heads.bias": (bias - plain @ whitening.mean).astype(np.float32)}
