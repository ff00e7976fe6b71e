"""The insights task's options, defined once: the batch's budget and rules, a spec, or a whole batch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from fedinsight.core.errors import ConfigError
from fedinsight.federation.delta import HELP as delta_help
from fedinsight.federation.delta import provisional
from fedinsight.federation.options import Options, option
from fedinsight.privacy.suppression import DEFAULT_MIN_GROUP_SIZE, MIN_GROUP_FLOOR
from fedinsight.tasks.insights.catalogue import PRESETS, InsightBatch, default_batch, parse_batch
from fedinsight.tasks.insights.distributed import DEFAULT_MAX_CUSTOMERS, NOISE_MODELS, shares_of
from fedinsight.tasks.insights.spec import InsightSpec, SpecJob, canonical, looks_like_spec_file, parse_spec, spec_job


@dataclass(frozen=True)
class InsightsOptions(Options):
    epsilon: float = option(1.0, "Epsilon this batch spends per partner, composed over all insights.", above=0,
                            maximum=100)
    delta: float | None = option(None, delta_help, above=0, below=1)
    mechanism: str = option("gaussian", "gaussian or laplace (OpenDP samplers).", choices=("gaussian", "laplace"))
    min_group_size: int = option(DEFAULT_MIN_GROUP_SIZE, "Groups with fewer customers (noisy count) are suppressed.",
                                 minimum=MIN_GROUP_FLOOR)
    suppression_margin: float = option(
        0.0, "Also require the noisy count to clear the minimum by this many noise sds (1.645: 95 %).",
        minimum=0, maximum=5)
    as_of: str = option("", "Reference date for segments (default: the spec's, the preset's, or a synthetic "
                            "folder's).")
    only: str = option("", "Run only these insights (comma-separated names).")
    preset: str = option("synthetic", "The catalogue's vocabulary (declared channels and campaigns).",
                         choices=tuple(PRESETS))
    spec: str = option("", "An insight spec (TOML file): your own insights, campaigns, channels, time window, zone "
                           "and budget split; its epsilon etc. win over these flags. See docs/insights.md.",
                       file=True)
    accept_suppression: bool = option(False, "Run even when the plan predicts that most answers will be "
                                             "suppressed (the federation is too small for this spec and epsilon).",
                                      flag="yes")
    noise_model: str = option("local", "local (each partner adds all the noise to its own vector) or "
                              "distributed-secagg (SecAgg+ sum, each partner adds a share: about sqrt(partners) "
                              "less noise; Gaussian only). See docs/privacy.md.", choices=NOISE_MODELS)
    honest_partners: int = option(0, "distributed-secagg: partners assumed not to collude with the coordinator "
                                     "(0: all).", minimum=0)
    max_dropouts: int = option(0, "distributed-secagg: partners that may drop out of the secure sum (more noise "
                                  "each).", minimum=0)
    max_customers: int = option(DEFAULT_MAX_CUSTOMERS, "distributed-secagg: public bound on each partner's "
                                "customers (sizes the SecAgg+ grid; a partner with more refuses).", minimum=1)
    batch: str = option("", "A whole insight batch (JSON); overrides the options above.", cli=False)

    ALIASES: ClassVar[dict[str, str]] = {"suppression-margin-sd": "suppression-margin", "yes": "accept-suppression"}

    def __post_init__(self) -> None:
        spec: Any = self.spec
        if isinstance(spec, Path):
            spec = parse_spec(spec)
        elif isinstance(spec, str) and spec.strip() and looks_like_spec_file(spec):
            raise ConfigError(f"spec {spec!r} looks like a file name: give the spec's text, a pathlib.Path, or "
                              "--spec FILE on the command line")
        if isinstance(spec, dict | InsightSpec) or (isinstance(spec, str) and spec.strip()):
            object.__setattr__(self, "spec", canonical(parse_spec(spec)))
        elif spec is None:
            object.__setattr__(self, "spec", "")
        super().__post_init__()

    def parsed_spec(self) -> InsightSpec | None:
        return parse_spec(self.spec) if self.spec else None

    def spec_job(self, *, requester: str, as_of: str | None = None) -> SpecJob:
        """The job this options' spec describes (ConfigError if there is none)."""
        spec = self.parsed_spec()
        if spec is None:
            raise ConfigError("these insights options carry no spec")
        return spec_job(spec, epsilon=self.epsilon, delta=provisional(self.delta), mechanism=self.mechanism,
                        min_group_size=self.min_group_size, suppression_margin_sd=self.suppression_margin,
                        requester=requester, as_of=self.as_of or as_of)

    def only_names(self) -> list[str] | None:
        return [s.strip() for s in self.only.split(",") if s.strip()] or None

    def resolve(self, *, requester: str, batch_id: str) -> InsightBatch:
        """The batch this job runs: the given one, the spec's (discovered keys still placeholders), or the
        preset's catalogue with these options."""
        if self.batch:
            batch = parse_batch(self.batch)
        elif self.spec:
            batch, _ = self.spec_job(requester=requester).batch(only=self.only_names())
        else:
            batch = default_batch(self.preset, epsilon=self.epsilon, delta=provisional(self.delta),
                                  as_of=self.as_of or None,
                                  mechanism=self.mechanism, min_group_size=self.min_group_size,
                                  suppression_margin_sd=self.suppression_margin, requester=requester,
                                  only=self.only_names())
        return batch.model_copy(update={"batch_id": batch_id})

    @property
    def distributed(self) -> bool:
        """Noise split across partners under SecAgg+ (``noise-model = distributed-secagg``)."""
        return self.noise_model == "distributed-secagg"

    def check_partners(self, partners: int) -> None:
        """Checks that need the federation's size (before anyone is contacted)."""
        if self.distributed:
            shares_of(partners, self.honest_partners, self.max_dropouts)

    def validate(self) -> None:
        if self.distributed and self.mechanism != "gaussian":
            raise ConfigError("--noise-model distributed-secagg adds discrete-Gaussian shares: use --mechanism "
                              "gaussian (or local noise for Laplace)")
        if self.batch and self.spec:
            raise ConfigError("give an insight spec or a whole batch, not both")
        if self.spec:  # the reference date may still come from the dataset (a simulation fills it in later)
            self.spec_job(requester="validate", as_of=VALIDATION_DATE).batch(only=self.only_names())
            return
        self.resolve(requester="validate", batch_id="validate")  # a bad batch is refused before anything runs


VALIDATION_DATE = "2000-01-01"
"""Stands in for a spec's reference date while its options are checked, before a dataset supplies one."""
