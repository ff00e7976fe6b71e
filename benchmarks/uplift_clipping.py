"""How much DP-SGD's clipping bites the uplift model: per-customer gradient norms and the basis' conditioning (JSON).

Why this exists: docs/uplift.md chose the clipping bound (1.5 with one head per arm, 2 with shared heads) from the
share of *converting* customers whose gradient the bound clips -- a converter's gradient is long, a non-converter's
short, so clipping converters more than the others biases the predicted conversion, and the uplift with it, low.
This script makes those figures reproducible, for any model shape the task offers.

What it measures, on the campaign audience of the synthetic federation (``--seed``, default 1: the seed reserved
for choosing settings; every customer of every partner): the model of each ``--setting`` (comma-separated uplift
options, as in ``benchmarks/uplift_tuning.py``) is set to predict the audience's mean conversion rate for everyone
(zero weights, the bias at its logit: the state DP-SGD starts from), and each customer's gradient of the task's
loss is computed exactly (``torch.func``: one gradient per customer, as Opacus computes them). Printed per setting:
the median gradient norm of converting and of non-converting customers, the share of each clipped at each bound of
``--clips``, and the condition number of the basis' second-moment matrix (with the bias column, over the directions
the audience spans), which says how unevenly plain (DP-)SGD moves along the model's directions. Logistic heads
only (``hidden`` 0, the default).

Usage::

    PYTHONPATH=. python benchmarks/uplift_clipping.py -s "heads=shared" -s "heads=separate" -s "basis=tent"
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
from rich.console import Console
from torch.func import functional_call, grad, vmap
from uplift_tuning import COSTS, parse_setting  # the same settings syntax (benchmarks/ is on sys.path)

from fedinsight.data.synth import SynthConfig, generate_partner_frames
from fedinsight.models.uplift import build_model
from fedinsight.tasks.uplift.baselines import concat
from fedinsight.tasks.uplift.features import FEATURES, audience
from fedinsight.tasks.uplift.options import UpliftOptions

CHUNK = 20_000  # customers per vectorised gradient call (memory)


def at_mean_rate(model: torch.nn.Module, rate: float) -> torch.nn.Module:
    """Every arm's prediction set to ``rate`` for every customer: zero weights, each head's bias at logit(rate)."""
    logit = float(np.log(rate / (1.0 - rate)))
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.zero_()
            if name in ("arm_heads.bias", "base.bias"):  # one head per arm, or the shared heads' base
                param.fill_(logit)
    return model


def gradient_norms(model: torch.nn.Module, x: np.ndarray, arm: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each customer's gradient norm of the task's loss (its own arm's log loss), over every parameter."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p: dict[str, torch.Tensor], xi: torch.Tensor, ai: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logit = functional_call(model, p, (xi[None],))[0].gather(0, ai[None])[0]
        return torch.nn.functional.binary_cross_entropy_with_logits(logit, yi)

    per_customer = vmap(grad(loss), in_dims=(None, 0, 0, 0))
    norms = []
    for start in range(0, len(y), CHUNK):
        part = slice(start, start + CHUNK)
        g = per_customer(params, torch.as_tensor(x[part], dtype=torch.float32),
                         torch.as_tensor(arm[part], dtype=torch.int64), torch.as_tensor(y[part], dtype=torch.float32))
        norms.append(torch.sqrt(sum((v.flatten(1) ** 2).sum(1) for v in g.values())).numpy())
    return np.concatenate(norms)


def basis_condition(model: torch.nn.Module, x: np.ndarray) -> tuple[float, int]:
    """Condition number of E[phi phi^T] of the heads' inputs with a bias column, over the directions the audience
    spans (what plain SGD's speed along the model's directions depends on), and how many directions it does not
    span (a binary feature's hinges are multiples of the feature; a knot above every value gives a zero column):
    gradients never move the model along those, so they play no part in the speed."""
    with torch.no_grad():
        phi = model.basis(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    phi = np.column_stack([phi, np.ones(len(phi))])
    eig = np.linalg.eigvalsh(phi.T @ phi / len(phi))
    spanned = eig[eig > eig[-1] * 1e-10]
    return float(spanned[-1] / spanned[0]), int(len(eig) - len(spanned))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--partners", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--setting", "-s", action="append", default=[], metavar="NAME=VALUE,...")
    parser.add_argument("--clips", default="1,1.5,2,3", help="clipping bounds to report (comma-separated)")
    args = parser.parse_args(argv)
    clips = [float(c) for c in args.clips.split(",")]
    console = Console(stderr=True)
    base = UpliftOptions(offer_costs=COSTS)
    with console.status("generating the synthetic federation"):
        frames, _ = generate_partner_frames(SynthConfig(customers=args.customers, partners=args.partners,
                                                        seed=args.seed, offers=True))
    who = concat([audience(t["events"], t["transactions"], base.campaign, base.arms) for t in frames.values()])
    rate = float(who.converted.mean())
    converted = who.converted == 1
    for text in args.setting or [""]:
        options = UpliftOptions(offer_costs=COSTS, **parse_setting(text))
        if options.hidden:
            raise SystemExit("logistic heads only (hidden=0): a hidden layer's gradients depend on its weights")
        model = at_mean_rate(build_model(len(FEATURES), len(options.arms), 0, options.seed, options.knot_values,
                                         options.heads, options.basis), rate)
        with console.status(f"{text or 'defaults'}: per-customer gradients"):
            norms = gradient_norms(model, who.x, who.arm, who.converted)
        condition, null = basis_condition(model, who.x)
        print(json.dumps({
            "setting": text or "defaults", "customers": len(who), "conversion_rate": round(rate, 5),
            "median_norm": {"converting": round(float(np.median(norms[converted])), 3),
                            "not_converting": round(float(np.median(norms[~converted])), 3)},
            "clipped_share": {f"{c:g}": {"converting": round(float((norms[converted] > c).mean()), 4),
                                         "not_converting": round(float((norms[~converted] > c).mean()), 4)}
                              for c in clips},
            "basis_condition_number": round(condition, 1), "basis_null_directions": null}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
