"""Blocks of synthetic customers cut into per-partner tables, a chunk of blocks at a time, and in memory.

Why a module of its own: writing (:mod:`fedinsight.data.synth_write`) and the in-memory frames for tests and small
runs share the same cut: blocks are generated in order, each row goes to its customer's partner (order kept), and
``chunk_customers`` only sets how many blocks are held at once, so it never changes the output.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from fedinsight.data.synth_base import BLOCK_CUSTOMERS, SEGMENTS, Plan, SynthConfig, generate_block, make_plan
from fedinsight.data.synth_truth import ground_truth


def split_by_partner(table: pa.Table, partner: np.ndarray, k: int) -> list[pa.Table]:
    """Rows of ``table`` per partner (order within a partner kept)."""
    order = np.argsort(partner, kind="stable")
    counts = np.bincount(partner, minlength=k)
    ordered = table.take(pa.array(order, pa.int64())) if k > 1 else table
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [ordered.slice(int(bounds[p]), int(counts[p])) for p in range(k)]


@dataclass
class Chunk:
    """A few blocks' rows, already cut per partner, and their customers' hidden truth."""

    done: int  # customers generated so far (all chunks)
    per_partner: dict[str, list[pa.Table]]  # table name -> one table per partner
    truth: pa.Table


def chunks(plan: Plan) -> Iterator[Chunk]:
    """Every block in order, ``plan.blocks_per_chunk`` at a time (row ids run on across chunks via ``offsets``)."""
    cfg = plan.config
    k = cfg.partners
    n_blocks = math.ceil(cfg.customers / BLOCK_CUSTOMERS)
    offsets = {"transactions": 0, "events": 0}
    for first in range(0, n_blocks, plan.blocks_per_chunk):
        blocks = [generate_block(plan, b, offsets) for b in range(first, min(n_blocks, first + plan.blocks_per_chunk))]
        per_partner: dict[str, list[pa.Table]] = {}
        for name in ("customers", "transactions", "interactions", "events"):
            table = pa.concat_tables([blk.tables[name][0] for blk in blocks])
            partner = np.concatenate([blk.tables[name][1] for blk in blocks])
            per_partner[name] = split_by_partner(table, partner, k)
        done = min(cfg.customers, (first + len(blocks)) * BLOCK_CUSTOMERS)
        yield Chunk(done, per_partner, pa.concat_tables([blk.truth for blk in blocks]))


def generate_partner_frames(config: SynthConfig) -> tuple[dict[str, dict[str, pd.DataFrame]], dict]:
    """In memory: ``{partner_id: {table_name: DataFrame}}`` plus the ground-truth dict.

    For tests and small runs (everything is held in memory). The ground truth is what
    ``write_synthetic`` writes to ``ground_truth.json`` plus one extra key, ``"customer_truth"``: a
    DataFrame with the hidden segment, purchase rate and propensity per customer_id. Tables a partner
    has no rows for are empty frames with the right columns here (``write_synthetic`` skips them).
    """
    plan = make_plan(config)
    k = config.partners
    collected: dict[str, list[list[pa.Table]]] = {}
    truths: list[pa.Table] = []
    for chunk in chunks(plan):
        for name, tables in chunk.per_partner.items():
            slots = collected.setdefault(name, [[] for _ in range(k)])
            for p in range(k):
                slots[p].append(tables[p])
        truths.append(chunk.truth)
    frames: dict[str, dict[str, pd.DataFrame]] = {}
    rows: dict[str, dict[str, int]] = {}
    items = plan.items.to_pandas()
    for p, partner in enumerate(plan.partner_names):
        frames[partner] = {}
        for name in ("customers", "transactions", "interactions", "items", "events"):
            frame = items.copy() if name == "items" else pa.concat_tables(collected[name][p]).to_pandas()
            frames[partner][name] = frame
        rows[partner] = {name: len(frame) for name, frame in frames[partner].items()}
    customer_truth = pa.concat_tables(truths).to_pandas()
    seg_counts = customer_truth["segment"].value_counts().reindex(SEGMENTS, fill_value=0).to_numpy()
    truth = ground_truth(plan, rows, seg_counts)
    truth["customer_truth"] = customer_truth
    return frames, truth
