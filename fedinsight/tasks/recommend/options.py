"""The recommender's options, defined once, and the privacy plan they imply."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from dp_accounting import dp_event

from fedinsight.core.errors import ConfigError
from fedinsight.federation.delta import HELP as delta_help
from fedinsight.federation.options import Options, option
from fedinsight.privacy.ledger import dpsgd_event
from fedinsight.privacy.mechanisms import gaussian_noise_multiplier

DEFAULT_EPSILON = 1.0
"""The private default (docs/recommender.md, "The default epsilon"): the strongest level benchmarked at which the
served model still beats popularity (MovieLens-100K, 10 partners: HR@10 0.495 vs 0.402, ~0.03 below epsilon 8,
about the spread between runs; since issue 18's blend with each partner's alone-model, 0.567 vs 0.407 at 20 rounds),
and the default of the other tasks. ``--epsilon inf`` / ``--non-private`` trains
without DP; partners with ``require-dp`` (every deployed partner by default) refuse such a job."""
PRIVATE_LOCAL_EPOCHS, NON_PRIVATE_LOCAL_EPOCHS = 1, 2
PRIVATE_PERSONALIZE_EPOCHS = 50
"""The settings the private benchmarks ran with: one full-batch DP step per round (more steps split the same
budget into noisier ones) and partner-local fine-tuning of the final model (which is what keeps the served
model above popularity under DP; never sent, no budget)."""

EVAL_SHARE = 0.1
"""The share of a private job's budget its evaluation releases get by default (see :func:`eval_noise_multiplier`)."""
EVAL_METRICS = ("accuracy", "all")

SERVER_OPTIMIZERS = ("fedavg", "fedadam")
NOISE_MODELS = ("local", "distributed-secagg")


@dataclass(frozen=True)
class RecommendOptions(Options):
    rounds: int = option(50, "Federated rounds.", minimum=1)
    epsilon: float = option(DEFAULT_EPSILON, "Customer-level epsilon per partner (inf, or --non-private: no DP, "
                            "refused by partners that require DP).", above=0)
    non_private: bool = option(False, "Train without DP (the same as --epsilon inf); partners with require-dp "
                               "refuse the job.")
    delta: float | None = option(None, delta_help, above=0, below=1)
    dim: int = option(32, "Embedding dimension (federated and centralized alike).", minimum=1, maximum=1024)
    local_epochs: int | None = option(None, "Local epochs per round on each partner (default: 1 with DP, 2 "
                                      "without).", minimum=1)
    sample_rate: float = option(1.0, "DP: Poisson rate at which customers join a step (1 = all).", above=0,
                                maximum=1)
    clip: float = option(1.0, "DP: L2 bound of one customer's whole item-side update.", above=0)
    dp_lr: float = option(5.0, "DP: item step size.", above=0)
    popularity_share: float = option(0.0, "DP: share of epsilon for an item-popularity release (0: none).",
                                     minimum=0, below=1)
    popularity_clip: float = option(5.0, "DP: L2 bound of one customer's popularity contribution.", above=0)
    explore: float = option(0.2, "Share of the top-k slots reserved for exploration.", minimum=0, below=1)
    k: int = option(10, "Recommendations per customer (the k of HR@k).", minimum=1)
    seed: int = option(0, "Seed of the item table's initialisation and of the evaluation's sampled negatives.")
    eval_every: int = option(0, "Evaluate the federated model every N rounds too (0: only at the end); under DP each "
                             "evaluation is charged from --eval-share.", minimum=0)
    eval_share: float = option(EVAL_SHARE, "Share of the job's privacy budget for the evaluation releases (DP: noised "
                               "HR/NDCG sums); 0: no evaluation at all.", minimum=0, maximum=0.5)
    eval_metrics: str = option("accuracy", "DP evaluation releases: accuracy (HR, NDCG sums) or all (also the "
                               "exploration share's HR/NDCG and intra-list diversity: more noise on each).",
                               choices=EVAL_METRICS)
    server_optimizer: str = option("fedavg", "Server optimizer.", choices=SERVER_OPTIMIZERS, flag="server-opt")
    server_lr: float = option(1.0, "Server learning rate.", above=0)
    shrink: bool = option(True, "DP: shrink each item's averaged change by the known noise variance.")
    lr: float = option(0.01, "Item learning rate (non-private Adam).", above=0)
    customer_lr: float = option(0.01, "Customer learning rate.", above=0)
    reg: float = option(1e-5, "Item L2 regularisation.", minimum=0)
    customer_reg: float = option(1e-5, "Customer L2 regularisation.", minimum=0)
    batch_customers: int = option(32, "Customers per local batch (non-private).", minimum=1)
    fit_epochs: int = option(3, "Epochs fitting customer embeddings to the final item table.", minimum=0)
    personalize_epochs: int | None = option(None, "Partner-local fine-tuning epochs of the final model, never "
                                            "sent (default: 50 with DP, 0 without).", minimum=0, flag="personalize")
    blend: bool = option(True, "Each partner serves a blend of the federated model and its own alone-model "
                         "(item-item or MF on its own customers), weighted on its own validation customers; never "
                         "sent, no budget. --no-blend serves the federated model.")
    noise_model: str = option("local", "DP: local (each partner adds all the noise) or distributed-secagg (SecAgg+ "
                              "sum, each partner adds a share; needs --local-epochs 1).", choices=NOISE_MODELS)
    honest_partners: int = option(0, "distributed-secagg: partners assumed not to collude (0: all).", minimum=0)
    max_dropouts: int = option(0, "distributed-secagg: drop-outs a round tolerates (more noise each).", minimum=0)
    baseline_epochs: int = option(50, "(simulation) Epochs of the centralized and local-only BPR-MF baselines.",
                                  minimum=1)
    local_only: bool = option(True, "(simulation) Also train each partner alone.")
    catalogue_path: str = option("", "The public item catalogue (an items table, .parquet or .csv).", flag="catalogue")

    ALIASES: ClassVar[dict[str, str]] = {"server-opt": "server-optimizer", "personalize": "personalize-epochs",
                                         "catalogue": "catalogue-path"}

    @property
    def private(self) -> bool:
        return math.isfinite(self.epsilon)

    @property
    def distributed(self) -> bool:
        """Noise split across partners under SecAgg+ (only private jobs)."""
        return self.private and self.noise_model == "distributed-secagg"

    def validate(self) -> None:
        self._resolve_defaults()
        if self.eval_every and not self.evaluates:
            raise ConfigError("--eval-every evaluates during training, but --eval-share 0 switches evaluation off")
        if self.distributed:
            if not (self.sample_rate == 1.0 and self.local_epochs == 1):
                raise ConfigError("--noise-model distributed-secagg runs one full-batch DP step per round: use "
                                  "--sample-rate 1 and --local-epochs 1")
            if self.popularity_share != 0:
                raise ConfigError("--popularity-share is not available with distributed-secagg noise")

    def _resolve_defaults(self) -> None:
        """``--non-private`` is ``--epsilon inf``; unset epochs take the value benchmarked for the job's privacy.

        Resolved here, once, so the run config, partners and ``summary.json`` all carry the actual numbers.
        """
        if self.non_private:
            if math.isfinite(self.epsilon) and self.epsilon != DEFAULT_EPSILON:
                raise ConfigError(f"--non-private and --epsilon {self.epsilon:g} contradict each other: pass one")
            object.__setattr__(self, "epsilon", math.inf)
        private = math.isfinite(self.epsilon)
        object.__setattr__(self, "non_private", not private)
        if self.local_epochs is None:
            object.__setattr__(self, "local_epochs", PRIVATE_LOCAL_EPOCHS if private else NON_PRIVATE_LOCAL_EPOCHS)
        if self.personalize_epochs is None:
            object.__setattr__(self, "personalize_epochs", PRIVATE_PERSONALIZE_EPOCHS if private else 0)

    def check_partners(self, partners: int) -> None:
        """Checks that need the federation's size (before anyone is contacted)."""
        if self.distributed:
            if partners < 2:
                raise ConfigError("--noise-model distributed-secagg needs at least 2 partners")
            if not 0 <= self.honest_partners <= partners:
                raise ConfigError(f"--honest-partners must be between 1 and the number of partners ({partners}), "
                                  "or 0 for all")
            if not self.max_dropouts < self.honest(partners):
                raise ConfigError("--max-dropouts must be below the number of honest partners")

    def honest(self, partners: int) -> int:
        return self.honest_partners or partners

    @property
    def evaluates(self) -> bool:
        return self.eval_share > 0

    def evaluations(self) -> int:
        """How many evaluation releases a partner makes in one job: the final one, and every ``eval_every``
        rounds before the last (the loop in :func:`fedinsight.tasks.recommend.server.run`)."""
        if not self.evaluates:
            return 0
        return 1 + (len(range(self.eval_every, self.rounds, self.eval_every)) if self.eval_every else 0)

    def eval_fields(self) -> tuple[str, ...]:
        """The per-customer sums a private evaluation releases (each customer adds a value in [0, 1] to each)."""
        return EVAL_FIELDS[self.eval_metrics]

    def steps_per_round(self) -> int:
        """DP-SGD steps one partner runs per round (Poisson steps visiting everyone once per epoch)."""
        from fedinsight.models.recommender import DPConfig  # torch: not when the options are only registered

        return self.local_epochs * DPConfig(noise_multiplier=0.0, sample_rate=self.sample_rate).steps_per_epoch()


EVAL_FIELDS = {"accuracy": ("hr", "ndcg"),
               "all": ("hr", "ndcg", "ild", "hr_explore", "ndcg_explore", "ild_explore")}
"""Names of :class:`~fedinsight.models.ranking.RankingTotals` sums. Not ``customers``: the evaluated customers are
exactly the ones the partner counted in hello (public), so noising the count again would protect nothing."""


def eval_noise_multiplier(epsilon: float, delta: float, share: float, evaluations: int) -> float:
    """The Gaussian noise multiplier of each evaluation release: ``share`` of the job's budget, in zCDP terms.

    Gaussian releases add up in rho (rho = 1 / (2 sigma^2) each). The job's whole budget, spent on a single
    Gaussian release, would allow noise ``sigma_all`` (dp_accounting's RDP calibration at (epsilon, delta));
    giving ``share`` of that rho to ``evaluations`` releases means sigma = sigma_all * sqrt(evaluations / share).
    Why not calibrate the share to (share x epsilon, delta) on its own, as the popularity release does: RDP
    composes far better than epsilons add, so that would buy 2.9x the noise for the same cost to training
    (at epsilon 1, delta 1e-6, share 0.1: sigma 41 vs 14; training's sigma rises by ~5 %: 32.1 -> 33.9).
    """
    if share <= 0 or evaluations < 1:
        return 0.0
    return gaussian_noise_multiplier(epsilon, delta) * math.sqrt(evaluations / share)


@dataclass(frozen=True)
class PrivacyPlan:
    """What a private job releases per partner, decided before it starts.

    First one Gaussian release of clipped per-item customer counts (the shared item biases start from
    it), calibrated to ``popularity_share`` of epsilon on its own; the evaluation releases (Gaussian sums of
    per-customer metrics, :func:`eval_noise_multiplier`); then ``steps`` DP-SGD steps whose noise multiplier
    is the smallest that keeps the composition of all of them within (epsilon, delta).
    """

    noise_multiplier: float = 0.0
    steps: int = 0
    popularity_noise_multiplier: float = 0.0  # 0: no popularity release
    eval_noise_multiplier: float = 0.0  # 0: evaluation is not a DP release (non-private job, or none)
    evaluations: int = 0  # evaluation releases per partner

    @classmethod
    def for_job(cls, job: Any, delta: float) -> PrivacyPlan:
        from fedinsight.privacy.sparse_dp import noise_multiplier_for  # torch: not when the options are only registered

        steps = job.rounds * job.steps_per_round()
        if not job.private:
            return cls(0.0, steps, 0.0, 0.0, job.evaluations())
        pop = gaussian_noise_multiplier(job.popularity_share * job.epsilon, delta) if job.popularity_share else 0.0
        evaluations = job.evaluations()
        sigma_eval = eval_noise_multiplier(job.epsilon, delta, job.eval_share, evaluations)
        prior = [*([dpsgd_event(pop, 1.0, 1)] if pop else []), *cls._eval_events(sigma_eval, evaluations)]
        return cls(noise_multiplier_for(job.epsilon, delta, job.sample_rate, steps, prior=prior), steps, pop,
                   sigma_eval, evaluations)

    @staticmethod
    def _eval_events(sigma: float, evaluations: int) -> list[dp_event.DpEvent]:
        if not sigma or not evaluations:
            return []
        event = dp_event.GaussianDpEvent(sigma)
        return [event if evaluations == 1 else dp_event.SelfComposedDpEvent(event, evaluations)]

    def training_events(self, job: Any) -> list[dp_event.DpEvent]:
        """The popularity release and the DP-SGD steps, in the order partners run them."""
        release = [dpsgd_event(self.popularity_noise_multiplier, 1.0, 1)] if self.popularity_noise_multiplier else []
        return [*release, dpsgd_event(self.noise_multiplier, job.sample_rate, self.steps)]

    def evaluation_events(self) -> list[dp_event.DpEvent]:
        """Every evaluation release of one partner, composed (empty when evaluation is not a DP release)."""
        return self._eval_events(self.eval_noise_multiplier, self.evaluations)

    def events(self, job: Any) -> list[dp_event.DpEvent]:
        """Everything one partner releases under DP in the job (what its ledger is charged)."""
        return [*self.training_events(job), *self.evaluation_events()]
