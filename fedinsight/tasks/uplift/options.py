"""The uplift task's options, defined once (CLI flags, Python call, job API, run config and summary derive)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedinsight.core.errors import ConfigError
from fedinsight.federation.delta import HELP as delta_help
from fedinsight.federation.delta import provisional
from fedinsight.federation.options import Options, option
from fedinsight.federation.secagg import NoiseModelOptions
from fedinsight.privacy.dpsgd import DpsgdPlan, plan_dpsgd
from fedinsight.privacy.suppression import DEFAULT_MIN_GROUP_SIZE, MIN_GROUP_FLOOR
from fedinsight.tasks.uplift.policy import expected_order_value

HOLDOUT_KEY = "uplift-holdout-key"
"""The vault entry of the partner's uplift holdout key: its own, so the uplift and propensity held-out sets are
independent (:mod:`fedinsight.privacy.holdout`)."""
RELEASES = 3
"""Gaussian releases besides DP-SGD: the evaluation, the policy counts, the campaign economics."""
NOISE_MODELS: tuple[str, ...] = ("local", "distributed-secagg")
DEFAULT_MAX_CUSTOMERS = 30_000
"""Default public bound on a partner's training customers with distributed noise: it sizes the SecAgg+ grid, which
at 30,000 keeps rounding under 0.6 % of the clipping norm for up to 20 partners."""

PRIOR_SHARE = 0.4
"""The default prior order value as a share of the order-value cap (80 at the default cap of 200): chosen with
the order-value weight on validation customers of the planted synthetic campaign (docs/uplift.md), where the
federated model's policy gained 2-8 points of the planted policy's value over a quarter of the cap and 2 orders."""
HEADS: tuple[str, ...] = ("shared", "separate")
"""The model's head parametrisations (``fedinsight.models.uplift.HEADS``; spelt out here so parsing options does
not import torch)."""
BASES: tuple[str, ...] = ("hinge", "tent")
"""The model's piecewise-linear bases at the knots (``fedinsight.models.uplift.BASES``, spelt out for the same
reason)."""
SEPARATE_HEADS_CLIP = 1.5
SHARED_HEADS_CLIP = 2.0
"""The default clipping norms: each clips about a quarter of the converting customers with its heads (seed 1's
audience: separate heads 23 % at 1.5, shared heads 24 % at 2; docs/uplift.md)."""
SCORE_EDGES: tuple[float, ...] = tuple(round(-0.05 + 0.025 * i, 4) for i in range(13))
"""Public inner edges of the predicted-uplift bins of the evaluation release (-0.05 to 0.25 in steps of 0.025,
plus two open-ended bins): fixed, so the release's shape never depends on data."""


def parse_costs(text: str) -> dict[str, float]:
    """``"discount=4,gift=3"`` -> ``{"discount": 4.0, "gift": 3.0}`` (ConfigError saying what to write)."""
    costs: dict[str, float] = {}
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            cost = float(value) if sep else math.nan
        except ValueError:
            cost = math.nan
        if not name or not math.isfinite(cost) or cost < 0:
            raise ConfigError(f"--offer-costs: '{part}' is not ARM=COST with a cost >= 0 (e.g. --offer-costs "
                              "\"discount=4,gift=3\": the cost of sending each offer to one customer)")
        if name in costs:
            raise ConfigError(f"--offer-costs names the arm '{name}' twice")
        costs[name] = cost
    return costs


def knots_ok(knots: tuple[float, ...]) -> bool:
    """Up to 8 increasing numbers strictly between 0 and 1 (none is fine): a knot at 0 or 1, a repeated or an
    out-of-order one would give NaN or wrong basis columns (the rule of ``--knots`` and of a model file's knots)."""
    return len(knots) <= 8 and all(0 < k < 1 for k in knots) and list(knots) == sorted(set(knots))


def parse_knots(text: str) -> tuple[float, ...]:
    """``"0.25,0.5,0.75"`` -> the model's public knots on the unit-scale features, hinges' or tents' ("" or "none":
    none)."""
    text = str(text).strip()
    if text.lower() in ("", "none"):
        return ()
    try:
        knots = tuple(float(v) for v in text.split(","))
    except ValueError:
        knots = ()
    if not knots or not knots_ok(knots):
        raise ConfigError(f"--knots must be up to 8 increasing numbers strictly between 0 and 1, e.g. "
                          f"\"0.25,0.5,0.75\", or \"none\" (got {text!r})")
    return knots


def parse_edges(text: str) -> tuple[float, float]:
    try:
        mid, high = (float(v) for v in str(text).split(","))
    except ValueError:
        raise ConfigError(f"--tiers must be two spends 'MID,HIGH' with 0 < MID < HIGH (got {text!r})") from None
    if not 0 < mid < high:
        raise ConfigError(f"--tiers must be two spends 'MID,HIGH' with 0 < MID < HIGH (got {text!r})")
    return mid, high


@dataclass(frozen=True)
class UpliftOptions(NoiseModelOptions, Options):
    campaign: str = option("offers", "The campaign (events' campaign value) whose arms are compared.")
    control: str = option("control", "The hold-out arm: customers of the campaign who were sent nothing.")
    offer_costs: str = option("", "Every offer arm with its cost per customer sent, e.g. \"discount=4,gift=3\" "
                                  "(required: the policy weighs incremental value against these costs).")
    epsilon: float = option(1.0, "Each partner's epsilon for the whole job (DP-SGD, evaluation, policy counts).",
                            above=0, maximum=100)
    delta: float | None = option(None, delta_help, above=0, below=1)
    rounds: int = option(30, "Federated rounds (FedAvg; 30 ranked customers better than 20 on validation customers: "
                             "the model was short of steps, not of privacy noise).", minimum=1, maximum=200)
    sample_rate: float = option(0.2, "Poisson sampling rate of DP-SGD batches (large batches: less noise per "
                                     "step for the same epsilon).", above=0, maximum=1)
    local_epochs: float = option(1.0, "Local epochs per round (steps = epochs / sample rate).", above=0)
    lr: float = option(5.0, "Learning rate of local DP-SGD.", above=0)
    momentum: float = option(0.0, "Momentum of local DP-SGD (post-processing of the noisy gradients).", minimum=0,
                             below=1)
    max_grad_norm: float | None = option(None, "DP-SGD per-customer gradient clipping norm (default: 1.5 with "
                                               "--heads separate, 2 with --heads shared: each clips about a quarter "
                                               "of the converting customers; at 1 every converting customer's "
                                               "gradient is clipped and a non-converting one's is not, so the model "
                                               "underestimates conversion, and uplift with it).", above=0)
    ema: float = option(0.5, "Decay of the moving average of the global models that is released (0: the last; "
                             "0.8 kept early, untrained rounds in and shrank the predicted uplift by up to a third).",
                        minimum=0, below=1)
    tail: float = option(0.0, "Share of the last rounds whose global models are averaged with equal weights into the "
                              "released model (0: the moving average of --ema over every round instead; on "
                              "validation customers neither rule was better over two DP draws).",
                         minimum=0, maximum=1)
    hidden: int = option(0, "Hidden units of the shared layer (0: logistic heads on the features).", minimum=0,
                         maximum=64)
    heads: str = option("separate", "How the arms' logistic heads are parametrised: \"separate\" (one head per arm: "
                                    "with --hidden 0 a customer's DP-SGD gradient touches its own arm's head only, a "
                                    "T-learner) or \"shared\" (a base for every customer plus each offer's change to "
                                    "it: the same model, but a treated customer's gradient is sqrt(2) x longer and "
                                    "base and heads are coupled; the default before issue 16's fresh-seed runs).")
    knots: str = option("0.2,0.4,0.6,0.8", "Public knots on every unit-scale feature where a logistic head may "
                                           "bend (an offer's effect changes slope or stops): fixed hinges "
                                           "relu(x - knot), or with --basis tent the tents' inner grid points; "
                                           "\"none\": the features alone.")
    basis: str = option("hinge", "The fixed piecewise-linear basis at --knots: \"hinge\" (each feature centred, "
                                 "plus relu(x - knot) per knot) or \"tent\" (hat functions at 0, the knots and 1: "
                                 "the same functions, with local, nearly orthogonal columns: better conditioned, but "
                                 "each customer's gradient is longer; on validation customers no better policy, "
                                 "the discount's ranking better and the gift's worse; docs/uplift.md).")
    release_share: float = option(0.15, "Share of epsilon for the three Gaussian releases (evaluation, policy "
                                        "counts, campaign economics).", above=0, below=1)
    tiers: str = option("300,1200", "Value tiers: spend in the 365 days before the campaign from which a customer "
                                    "is mid and high value (public thresholds, in the reporting currency).")
    order_value_cap: float = option(200.0, "Public cap of a customer's expected order value (the policy's value "
                                           "of one conversion).", above=0)
    order_value_prior: float = option(0.0, "Public prior order value the policy shrinks each customer's own mean "
                                           "order towards (0: 0.4 x --order-value-cap).", minimum=0)
    order_value_weight: float = option(8.0, "How many orders the prior counts as (0: each customer's own mean "
                                            "order alone; customers without purchases are then worth nothing).",
                                       minimum=0, maximum=100)
    top_share: float = option(0.3, "Share of customers a targeted campaign reaches (the report compares it with "
                                   "random targeting).", above=0, below=1)
    min_group_size: int = option(DEFAULT_MIN_GROUP_SIZE, f"Policy cells with a smaller noisy count are not reported "
                                 f"(at least {MIN_GROUP_FLOOR}).", minimum=MIN_GROUP_FLOOR)
    seed: int = option(0, "Seed of the initial model (public: every partner starts from the same weights).")
    noise_model: str = option("local", "local (each partner runs DP-SGD and adds all the noise to its own update) or "
                                       "distributed-secagg (one full-batch step per round on whitened heads: each "
                                       "partner adds a discrete-Gaussian share to its clipped gradient sum and the "
                                       "coordinator sees only the SecAgg+ sum; sample-rate, local-epochs, lr and "
                                       "momentum are not used). See docs/uplift.md.", choices=NOISE_MODELS)
    secure_lr: float = option(5.0, "distributed-secagg: the coordinator's step size on the whitened heads (times "
                                   "each arm's mean gradient; at most 8 keeps every step stable whatever the "
                                   "conversion rate; docs/uplift.md).", above=0)
    honest_partners: int = option(0, "distributed-secagg: partners assumed not to collude with the coordinator "
                                     "(0: all).", minimum=0)
    max_dropouts: int = option(0, "distributed-secagg: partners that may drop out of a round (more noise each).",
                               minimum=0)
    max_customers: int = option(DEFAULT_MAX_CUSTOMERS, "distributed-secagg: public bound on each partner's "
                                "training customers (sizes the SecAgg+ grid; a partner with more refuses).", minimum=1)

    def validate(self) -> None:
        costs = self.costs
        if self.control in costs:
            raise ConfigError(f"the control arm '{self.control}' cannot also be an offer in --offer-costs")
        if not self.campaign.strip():
            raise ConfigError("--campaign must name the campaign whose arms are compared")
        parse_edges(self.tiers)
        parse_knots(self.knots)
        if self.heads not in HEADS:
            raise ConfigError(f"--heads must be one of {', '.join(HEADS)} (got {self.heads!r})")
        if self.basis not in BASES:
            raise ConfigError(f"--basis must be one of {', '.join(BASES)} (got {self.basis!r})")
        if self.distributed and (self.heads != "separate" or self.hidden or self.basis != "hinge"):
            raise ConfigError("--noise-model distributed-secagg trains separate logistic heads on the hinge basis: use "
                              "--heads separate --hidden 0 --basis hinge (the defaults), or --noise-model local")
        self.plan()

    def require_costs(self) -> None:
        """Costs are required, but a simulation of the built-in synthetic data fills in its declared ones, so this
        is checked when the job is checked (before any partner is contacted), not when the options are parsed."""
        if not self.costs:
            raise ConfigError("uplift needs --offer-costs: every offer arm of the campaign with its cost per customer "
                              "sent, e.g. --offer-costs \"discount=4,gift=3\"")

    @property
    def costs(self) -> dict[str, float]:
        return parse_costs(self.offer_costs)

    @property
    def offers(self) -> tuple[str, ...]:
        return tuple(self.costs)

    @property
    def arms(self) -> tuple[str, ...]:
        """Control first, then the offers in the order of ``--offer-costs`` (the model's heads)."""
        return (self.control, *self.offers)

    @property
    def knot_values(self) -> tuple[float, ...]:
        return parse_knots(self.knots)

    @property
    def tier_edges(self) -> tuple[float, float]:
        return parse_edges(self.tiers)

    @property
    def prior_order_value(self) -> float:
        """The policy's prior order value: ``--order-value-prior``, or :data:`PRIOR_SHARE` of the cap when it is 0."""
        return self.order_value_prior or self.order_value_cap * PRIOR_SHARE

    def expected_order_value(self, who: Any) -> np.ndarray:
        """The policy's expected order value of each customer of an audience (shrunk own mean order)."""
        return expected_order_value(who.order_value, who.orders, self.order_value_cap, self.prior_order_value,
                                    self.order_value_weight)

    @property
    def clip(self) -> float:
        """The clipping norm in force: the one given, else the one chosen for the heads (docs/uplift.md: shared heads
        at 1.5 clipped 85 % of the converting customers, and their uplift came out at a tenth of its size)."""
        if self.max_grad_norm is not None:
            return self.max_grad_norm
        return SEPARATE_HEADS_CLIP if self.heads == "separate" else SHARED_HEADS_CLIP

    @property
    def distributed(self) -> bool:
        """Training noise split across partners under SecAgg+ (:mod:`fedinsight.tasks.uplift.distributed`)."""
        return self.noise_model == "distributed-secagg"

    @property
    def steps_per_round(self) -> int:
        if self.distributed:
            return 1  # one secure sum = one full-batch step
        return max(1, round(self.local_epochs / self.sample_rate))

    @property
    def gaussian_releases(self) -> int:
        """Gaussian releases besides training: :data:`RELEASES`, and with distributed noise the whitening statistics
        (:mod:`fedinsight.tasks.uplift.distributed`) before the first round."""
        return RELEASES + (1 if self.distributed else 0)

    def plan(self) -> DpsgdPlan:
        """DP-SGD (or, with distributed noise, one full-batch Gaussian step per round) for the training, plus the
        Gaussian releases (evaluation, policy counts, economics; the whitening statistics) at one multiplier."""
        return plan_dpsgd(self.epsilon, provisional(self.delta), sample_rate=self.batch_rate,
                          steps_per_round=self.steps_per_round, rounds=self.rounds, max_grad_norm=self.clip,
                          gaussian_releases=self.gaussian_releases, gaussian_share=self.release_share)
