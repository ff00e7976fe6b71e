"""Coordinator side of segments: initialise from the noisy histogram, run the Lloyd steps, release sizes.

Everything here is post-processing of the partners' summed noisy releases (the job was charged, on every
ledger, before this runs). The model file ``segments.json`` holds only public things: the features, their
public caps, the reference date and the centres -- what a partner needs to place its own customers.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fedinsight.core.errors import ConfigError
from fedinsight.core.files import atomic_output_file
from fedinsight.federation import progress
from fedinsight.federation.manifest import Manifest
from fedinsight.federation.task import Session
from fedinsight.privacy.intervals import estimate
from fedinsight.privacy.suppression import suppressed
from fedinsight.tasks.segments import choose, kmeans
from fedinsight.tasks.segments.client import RECORD
from fedinsight.tasks.segments.features import describe, feature, raw_value
from fedinsight.tasks.segments.options import SegmentsOptions

MODEL_FILE = "segments.json"
MIN_COUNT_SD = 2.0
"""A cluster's centre moves only if its summed noisy count clears this many noise sds (else it stays)."""


def _summed(replies: dict[int, Any], record: str, key: str) -> np.ndarray:
    return np.sum([np.asarray(m.content[record][key], dtype=float) for m in replies.values()], axis=0)


INIT_STARTS = 10
"""k-means++ starts on the noisy histogram (the best weighted cost is kept): free post-processing that keeps one
unlucky start from fixing a poor local optimum the few noisy Lloyd steps cannot leave."""


def initial_centres(histogram: np.ndarray, options: SegmentsOptions) -> np.ndarray:
    """Weighted k-means++ (public seeds) on the grid's cell centres, weighted by the summed noisy histogram (negative
    noisy counts count 0); the best of :data:`INIT_STARTS` starts by weighted cost."""
    cells = kmeans.cell_centres(options.dim, options.grid_size)
    weights = np.maximum(np.asarray(histogram, dtype=float), 0.0)

    def weighted_cost(c: np.ndarray) -> float:
        return float((((cells[:, None, :] - c[None]) ** 2).sum(axis=2).min(axis=1) * weights).sum())

    starts = [kmeans.weighted_kmeans(cells, weights, options.k, options.seed * INIT_STARTS + s)
              for s in range(INIT_STARTS)]
    return min(starts, key=weighted_cost)


def prepare(histogram: np.ndarray, options: SegmentsOptions,
            partners: int) -> tuple[SegmentsOptions, np.ndarray, dict[str, Any]]:
    """From the summed noisy histogram (post-processing only, no extra epsilon): the number of segments (chosen
    in ``--k-range``, or ``--k`` lowered to the cells that clearly hold customers), the initial centres, and the
    summary's ``choice`` (per-k costs, the rule, its cost 0) and ``notes`` (flat features, a lowered k)."""
    cells = kmeans.cell_centres(options.dim, options.grid_size)
    weights = np.maximum(np.asarray(histogram, dtype=float), 0.0)
    cell_sd = options.noise().init * math.sqrt(partners)
    notes = [f"The feature '{name}' hardly varies across the federation's customers (95 % or more in one band "
             "of the noisy histogram): it cannot separate segments; consider leaving it out of --features."
             for name in choose.flat_features(histogram, options.names, options.grid_size, cell_sd)]
    filled = choose.occupied(histogram, cell_sd)
    if filled < 2:
        raise ConfigError(f"the federation's noisy histogram shows customers in {filled} cell(s) of the grid: too "
                          "few customers (or too little variety) for 2 segments; add partners or customers, or "
                          "raise --epsilon")
    bounds = choose.parse_range(options.k_range)
    choice: dict[str, Any] = {}
    if bounds:
        candidates = range(bounds[0], min(bounds[1], filled) + 1)
        if not candidates:
            candidates = range(filled, filled + 1)
        found = {k: initial_centres(histogram, replace(options, k=k)) for k in candidates}
        costs = {k: choose.weighted_cost(cells, weights, c) for k, c in found.items()}
        k = choose.pick(costs)
        choice = {"range": list(bounds), "chosen": k, "costs": {str(j): round(v, 2) for j, v in costs.items()},
                  "rule": f"smallest k after which one more segment cuts the noisy histogram's k-means cost by less "
                          f"than {choose.ELBOW:.0%}", "epsilon": 0.0}
        return replace(options, k=k), found[k], {"choice": choice, "notes": notes}
    if options.k > filled:
        notes.append(f"{options.k} segments were asked for, but only {filled} cells of the noisy histogram clearly "
                     f"hold customers: {filled} segments were found instead (more would be duplicates or empty).")
        options = replace(options, k=filled)
    return options, initial_centres(histogram, options), {"choice": choice, "notes": notes}


def resize(session: Session, k: int) -> None:
    """Hold the partners' later replies to ``k`` segments (the manifest declared the range's largest k)."""

    def narrowed(m: Manifest) -> Manifest:
        shapes = {"counts": (k,), "sums": (k * session.options.dim,), "sizes": (k,)}  # type: ignore[attr-defined]
        return Manifest(m.task, tuple(replace(r, fields={n: shapes.get(n, s) for n, s in r.fields.items()})
                                      for r in m.releases))

    assert session.plan is not None
    session.plan.manifest = narrowed(session.plan.manifest)
    session.guard.replace(narrowed(session.guard.manifest))


def step(centres: np.ndarray, counts: np.ndarray, sums: np.ndarray, options: SegmentsOptions,
         partners: int) -> np.ndarray:
    """One Lloyd update from the summed noisy counts and sums of ``partners`` partners."""
    min_count = max(1.0, MIN_COUNT_SD * options.noise().counts * math.sqrt(partners))
    return kmeans.update(centres, counts, np.asarray(sums).reshape(options.k, options.dim), min_count)


def run(session: Session) -> dict[str, Any]:
    """The workflow; returns the task's part of ``summary.json`` (the centres and the released sizes)."""
    options: SegmentsOptions = session.options  # type: ignore[assignment]
    partners = len(session.nodes)
    total = options.iterations + 2
    progress.report("steps", 0, total)
    options, centres, found = prepare(_summed(session.ask("query", "histogram"), RECORD, "histogram"), options,
                                      partners)
    if options.k != session.options.k_max:  # type: ignore[attr-defined]
        resize(session, options.k)
    history = [centres.tolist()]
    for number in range(1, options.iterations + 1):
        progress.report("steps", number, total)
        replies = session.ask("query", "assign", config=session.config("assign", centres=json.dumps(
            centres.tolist()), step=number, k=options.k))
        centres = step(centres, _summed(replies, "counts", "counts"), _summed(replies, "sums", "sums"), options,
                       partners)
        history.append(centres.tolist())
    replies = session.ask("query", "sizes", config=session.config("sizes", centres=json.dumps(centres.tolist()),
                                                                   k=options.k))
    progress.report("steps", total, total)
    return {**describe_segments(centres, _summed(replies, RECORD, "sizes"), options, partners),
            "centre_history": history, "k_choice": found["choice"], "notes": found["notes"]}


def describe_segments(centres: np.ndarray, sizes: np.ndarray, options: SegmentsOptions,
                      partners: int) -> dict[str, Any]:
    """The task's summary: each segment's centre, words, typical customer and noisy size (or suppressed)."""
    plan = options.noise()
    sd = plan.sizes * math.sqrt(partners)
    hidden = suppressed(sizes, options.min_group_size)
    segments = []
    for j in range(options.k):
        est = estimate(float(sizes[j]), sd**2, lower=0.0)
        segments.append({
            "segment": j + 1, "centre": [round(float(v), 4) for v in centres[j]],
            "words": describe(centres[j], options.names),
            "typical": {n: round(raw_value(float(v), n), 2) for v, n in zip(centres[j], options.names, strict=True)},
            "size": None if hidden[j] else round(est.value, 1),
            "ci95": None if hidden[j] else [round(est.ci95[0], 1), round(est.ci95[1], 1)],
            "suppressed": bool(hidden[j]),
        })
    return {
        "k": options.k, "iterations": options.iterations, "features": list(options.names), "as_of": options.as_of,
        "segments": segments, "centres": centres.tolist(),
        "suppressed_segments": int(hidden.sum()), "size_noise_sd": sd,
        "noise": {"init": plan.init, "counts": plan.counts, "sums": plan.sums, "sizes": plan.sizes,
                  "rho": plan.rho, "sum_bound": options.sum_bound},
    }


def model(summary: dict[str, Any], currency: dict[str, Any] | None = None) -> dict[str, Any]:
    """The public model a partner assigns its own customers with (``partner export segments``); ``currency``: the
    job's public reporting currency and rates (the partner converts its amounts the same way)."""
    names = summary["features"]
    return {"kind": "fedinsight-segments", "version": 1, "as_of": summary["as_of"], "features": names,
            "caps": {n: feature(n).cap for n in names}, "centres": summary["centres"],
            "words": [s["words"] for s in summary["segments"]], "currency": dict(currency or {})}


def write_model(out_dir: Path, summary: dict[str, Any], currency: dict[str, Any] | None = None) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MODEL_FILE
    with atomic_output_file(path) as tmp:
        tmp.write_text(json.dumps(model(summary, currency), indent=2) + "\n")
    return path
