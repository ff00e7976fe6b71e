"""The propensity task's options, defined once (the CLI, Python, the job API and the run config derive)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from fedinsight.core.errors import ConfigError
from fedinsight.federation.delta import HELP as delta_help
from fedinsight.federation.delta import provisional
from fedinsight.federation.options import Options, option
from fedinsight.federation.secagg import NoiseModelOptions
from fedinsight.models.propensity_kinds import MODEL_KINDS
from fedinsight.privacy.dpsgd import DpsgdPlan, plan_dpsgd
from fedinsight.tasks.propensity.evaluation import EvalCaps, eval_noise_multiplier
from fedinsight.tasks.propensity.features import FeatureCaps, LabelWindow

NOISE_MODELS = ("local", "distributed-secagg")
HOLDOUT_KEY = "propensity-holdout-key"
"""The vault entry of the partner's propensity holdout key (:mod:`fedinsight.privacy.holdout`)."""
DEFAULT_MAX_CUSTOMERS = 100_000
"""Default public bound on a partner's customers in distributed-noise training: it sizes the SecAgg+ grid, so it
must stay small enough that rounding onto the grid adds under 1 % to the clipping norm (an MLP needs <= ~20,000)."""


@dataclass(frozen=True)
class PropensityOptions(NoiseModelOptions, Options):
    rounds: int = option(20, "Federated rounds.", minimum=1)
    epsilon: float = option(1.0, "Each partner's epsilon for the whole run (DP-SGD + statistics).", above=0)
    delta: float | None = option(None, delta_help, above=0, below=1)
    non_private: bool = option(False, "No DP at all (to measure what DP costs; partners must allow it).")
    model: str = option("logreg", "logreg or mlp.", choices=MODEL_KINDS)
    seed: int = option(0, "Seed of the initial model (public: every partner starts from the same weights).")
    start: str = option("", "Calibration start (features from here; default: the dataset's).")
    cutoff: str = option("", "Cutoff between calibration and holdout (labels after it).")
    end: str = option("", "End of the holdout window.")
    test_share: float = option(0.2, "Ignored: each partner holds out its own share (its node config test-share, "
                                    "default 0.2) with its own secret key; kept so older job specs still parse.",
                               above=0, below=1)
    sample_rate: float = option(0.1, "Poisson sampling rate of DP-SGD batches.", above=0, maximum=1)
    local_epochs: float = option(1.0, "Local epochs per round (steps = epochs / sample rate).", above=0)
    lr: float = option(0.5, "Initial learning rate (cosine decay over the rounds).", above=0)
    max_grad_norm: float = option(3.0, "DP-SGD per-customer gradient clipping norm.", above=0)
    stats_share: float = option(0.15, "Share of epsilon for the feature statistics and the LTV histogram.",
                                above=0, below=1)
    evaluate: bool = option(True, "Evaluate on the partners' held-out customers (DP releases, charged); false: "
                                  "no evaluation is asked for, sent or charged.")
    eval_share: float = option(0.1, "Share of epsilon for the DP evaluation releases.", above=0, below=1)
    eval_every_round: bool = option(False, "Also evaluate after every round (rounds + 1 releases instead of 1: "
                                           "much more noise per release for the same share).")
    eval_log_loss_cap: float = option(3.0, "Public per-customer clip of the released log loss.", above=0)
    eval_error_cap: float = option(200.0, "Public per-customer clip of the released |spend - LTV| (money).",
                                   above=0)
    min_eval_customers: int = option(50, "Fewest held-out customers a partner evaluates on (a partner takes the "
                                         "larger of this and its own; never below 50).", minimum=50)
    ema: float = option(0.7, "Decay of the moving average of global models that is released.", minimum=0,
                        below=1)
    tier_mid: float = option(0.5, "True LTV tiers: mid from this quantile of holdout spend.", above=0, below=1)
    tier_high: float = option(0.8, "True LTV tiers: high from this quantile.", above=0, below=1)
    cap_amount: float = option(FeatureCaps.amount, "Public cap of one purchase day's spend.", above=0)
    cap_total_amount: float = option(FeatureCaps.total_amount, "Public cap of calibration or holdout spend.",
                                     above=0)
    cap_quantity: float = option(FeatureCaps.quantity, "Public cap of quantities.", above=0)
    recalibrate_from: str = option("", "Recalibrate: a previous propensity run folder (or its model.pt). This job "
                                   "starts from that model's weights, re-fits on the window --start/--cutoff/--end "
                                   "(its cutoff after the previous one's) and evaluates old and new model on the "
                                   "newest held-out customers (one more DP evaluation release, in the charge).")
    noise_model: str = option("local", "local (each partner runs DP-SGD and adds all the noise) or distributed-secagg "
                              "(one full-batch step per round: each partner adds a discrete-Gaussian share to its "
                              "clipped gradient sum, the coordinator sees only the SecAgg+ sum; sample-rate and "
                              "local-epochs are not used). See docs/propensity.md.", choices=NOISE_MODELS)
    honest_partners: int = option(0, "distributed-secagg: partners assumed not to collude with the coordinator "
                                     "(0: all).", minimum=0)
    max_dropouts: int = option(0, "distributed-secagg: partners that may drop out of a round (more noise each).",
                               minimum=0)
    max_customers: int = option(DEFAULT_MAX_CUSTOMERS, "distributed-secagg: public bound on each partner's "
                                "customers (sizes the SecAgg+ grid; a partner with more refuses).", minimum=1)

    ALIASES: ClassVar[dict[str, str]] = {"window-start": "start", "window-cutoff": "cutoff", "window-end": "end"}

    def validate(self) -> None:
        if not self.tier_mid < self.tier_high:
            raise ConfigError(f"tier levels must satisfy 0 < mid < high < 1 (got {self.tier_mid}, {self.tier_high})")
        if self.noise_model == "distributed-secagg" and self.non_private:
            raise ConfigError("--noise-model distributed-secagg splits DP noise across partners: drop --non-private "
                              "(or use --noise-model local)")
        if self.distributed and self.evaluate and self.eval_every_round:
            raise ConfigError("--eval-every-round is for local noise; with --noise-model distributed-secagg the model "
                              "is evaluated once, at the end")
        if self.recalibrate_from and not self.evaluate:
            raise ConfigError("--recalibrate-from compares the old and new model on held-out customers: drop "
                              "--no-evaluate (or recalibrate without comparing: train from scratch)")
        if not self.non_private and not math.isfinite(self.epsilon):
            raise ConfigError(f"--epsilon must be a finite positive number (got {self.epsilon}); or use --non-private")
        if self.start or self.cutoff or self.end:
            _ = self.window  # start < cutoff < end
        _ = self.eval_noise_multiplier()  # bad privacy settings fail here, before anything runs

    @property
    def window(self) -> LabelWindow:
        if not (self.start and self.cutoff and self.end):
            raise ConfigError("give --start, --cutoff and --end (calibration from start to cutoff, holdout from "
                              "cutoff to end)")
        return LabelWindow(self.start, self.cutoff, self.end)  # type: ignore[arg-type]

    @property
    def caps(self) -> FeatureCaps:
        return FeatureCaps(self.cap_amount, self.cap_total_amount, self.cap_quantity)

    @property
    def distributed(self) -> bool:
        """Noise split across partners under SecAgg+ (private jobs only)."""
        return self.noise_model == "distributed-secagg" and not self.non_private

    @property
    def steps_per_round(self) -> int:
        if self.distributed:
            return 1  # one secure sum = one full-batch step
        return max(1, round(self.local_epochs / self.sample_rate))

    @property
    def eval_releases(self) -> int:
        """How many evaluation releases one partner makes in the job (0: no evaluation)."""
        if not self.evaluate:
            return 0
        previous = 1 if self.recalibrate_from else 0  # the previous model, once, on the same held-out customers
        return (self.rounds + 1 if self.eval_every_round else 1) + previous

    @property
    def eval_caps(self) -> EvalCaps:
        return EvalCaps(self.eval_log_loss_cap, self.eval_error_cap)

    @property
    def training_epsilon(self) -> float:
        """Epsilon of training and the feature statistics: the job's, less the evaluation's share.

        Why 10 % by default: one final evaluation is a single Gaussian release of a small vector; at 10 % of
        epsilon = 1 its noise (sigma ~ 21 customers per bin and partner on CDNOW) moves the pooled AUC by about
        0.01, while the 90 % left for DP-SGD costs the model less than that (docs/propensity.md)."""
        return self.epsilon * (1 - self.eval_share) if self.eval_releases else self.epsilon

    def plan(self) -> DpsgdPlan | None:
        if self.non_private:
            return None
        return plan_dpsgd(self.training_epsilon, provisional(self.delta), sample_rate=self.batch_rate,
                          steps_per_round=self.steps_per_round, rounds=self.rounds, max_grad_norm=self.max_grad_norm,
                          gaussian_releases=2, gaussian_share=self.stats_share)

    def eval_noise_multiplier(self) -> float | None:
        """The Gaussian multiplier of each evaluation release (None: non-private, or no evaluation)."""
        dp = self.plan()
        if dp is None or not self.eval_releases:
            return None
        return eval_noise_multiplier(dp, self.epsilon, provisional(self.delta), self.eval_releases)
