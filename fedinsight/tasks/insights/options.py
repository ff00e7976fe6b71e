"""The insights task's options, defined once: the batch's budget and rules, or a whole batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fedinsight.federation.options import Options, option
from fedinsight.privacy.suppression import DEFAULT_MIN_GROUP_SIZE
from fedinsight.tasks.insights.catalogue import PRESETS, InsightBatch, default_batch, parse_batch


@dataclass(frozen=True)
class InsightsOptions(Options):
    epsilon: float = option(1.0, "Epsilon this batch spends per partner, composed over all insights.", above=0,
                            maximum=100)
    delta: float = option(1e-6, "Delta of the batch.", above=0, below=1)
    mechanism: str = option("gaussian", "gaussian or laplace (OpenDP samplers).", choices=("gaussian", "laplace"))
    min_group_size: int = option(DEFAULT_MIN_GROUP_SIZE, "Groups with fewer customers (noisy count) are suppressed.",
                                 minimum=1)
    suppression_margin: float = option(
        0.0, "Also require the noisy count to clear the minimum by this many noise sds (1.645: 95 %).",
        minimum=0, maximum=5)
    as_of: str = option("", "Reference date for segments (default: the preset's, or a synthetic folder's).")
    only: str = option("", "Run only these insights (comma-separated names).")
    preset: str = option("synthetic", "The catalogue's vocabulary (declared channels and campaigns).",
                         choices=tuple(PRESETS))
    batch: str = option("", "A whole insight batch (JSON); overrides the options above.", cli=False)

    ALIASES: ClassVar[dict[str, str]] = {"suppression-margin-sd": "suppression-margin"}

    def resolve(self, *, requester: str, batch_id: str) -> InsightBatch:
        """The batch this job runs: the given one, or the preset's catalogue with these options."""
        if self.batch:
            batch = parse_batch(self.batch)
        else:
            only = [s.strip() for s in self.only.split(",") if s.strip()] or None
            batch = default_batch(self.preset, epsilon=self.epsilon, delta=self.delta, as_of=self.as_of or None,
                                  mechanism=self.mechanism, min_group_size=self.min_group_size,
                                  suppression_margin_sd=self.suppression_margin, requester=requester, only=only)
        return batch.model_copy(update={"batch_id": batch_id})

    def validate(self) -> None:
        self.resolve(requester="validate", batch_id="validate")  # a bad batch is refused before anything runs
