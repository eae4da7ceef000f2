"""The training monitor through grokking, its overhead, and forecasts of the transition.

A one-layer transformer (token and position embeddings, `eqx.nn.MultiheadAttention`, a ReLU
`eqx.nn.MLP`, a linear unembedding; residual connections, no LayerNorm) learns `a + b mod p` from a
fraction of all pairs, full batch, AdamW (weight decay 1.0, betas 0.9/0.98), as in Nanda et al.
It first memorises the training pairs, and generalises (test accuracy jumps) much later.
`jaxstat.quotient.symmetry` derives its group from the model: `GL(d_k) x GL(d_v)` per head and head
permutations of the attention, permutations and positive rescalings of the ReLU units.

Every `k` training steps (one `lax.scan` chunk) the `Monitor` records raw and orbit-minimal norms,
the attention invariants' spectra, the Noether charges and their drift, the split of the AdamW
update into its orbit and horizontal parts, and (every 10th call) the sharpness; the `Recorder`
writes the series to disk. The overhead is the time of one chunk with the monitor over one without.

Forecasts of the transition time `T` (first step with test accuracy >= 0.9), each issued online
from the past only (a window of the last `W` monitor points):
- shock fit on the test loss: `q = c - A log(t* - t)` (the integral along an inviscid Burgers
  characteristic, see `jaxstat.quotient.forecast_shock`), forecast `t*`;
- the same fit on the orbit-minimal (quotient) norm;
- baseline (b): the same fit on the raw weight norm;
- baseline (a), Omnigrok: the raw norm extrapolated linearly to a threshold, the threshold being
  the mean raw norm at the transition of the *other* seeds (information from other runs, which the
  shock fits do not use).
Lead: `T - t_i` for the first issue time `t_i` from which every forecast up to `T` lies within 20%
of `T`. Error: `|forecast - T| / T` of the forecast issued at `0.8 T` (the last one before it).
"""

import os
import sys
import tempfile
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np


sys.path.insert(0, os.path.dirname(__file__))
from _common import main, Table  # noqa: E402
from _grokking_setup import (  # noqa: E402
    cross_entropy,
    forecasts,
    grokking,
    lead_and_error,
    optimiser,
    problem,
    train_steps,
    transition,
)

import jaxstat.quotient as jq  # noqa: E402


def _chunk_times(every, quick, **kw):
    """Per-chunk seconds without and with the monitor (compiled once, timed on later calls)."""
    model, data = problem(kw["p"], kw["d_model"], kw["heads"], kw["width"], kw["frac"], 0)
    Xtr, Ytr, Xte, Yte = (jnp.asarray(z) for z in data)
    group = jq.symmetry(model)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt = optimiser(kw["lr"])

    def loss(p_):
        return cross_entropy(eqx.combine(p_, static), Xtr, Ytr)

    @jax.jit
    def train(params, opt_state):
        return train_steps(opt, loss, params, opt_state, every)

    opt_state = opt.init(params)
    rows = {}
    t_train = _best(lambda: train(params, opt_state), 2 if quick else 5)
    rows["training chunk"] = t_train
    u, _ = opt.update(jax.grad(loss)(params), opt_state, params)
    parts = {
        "raw norms": jq.RawNorms(),
        "quotient norm": jq.QuotientNorm(group),
        "invariant spectra": jq.InvariantSpectra(group, top=2),
        "charges + drift": jq.Charges(group),
        "update split (LSMR)": jq.GradientSplit(group),
        "sharpness (5 Lanczos)": jq.SharpnessEstimate(num_iterations=5),
        "local entropy (2 chains x 5 steps)": jq.LocalEntropyEstimate(
            gamma=1e3, beta=1e4, step_size=1e-4
        ),
    }
    for name, obs in parts.items():
        mon = jq.Monitor({"x": obs})
        st = mon.init(model)
        f = eqx.filter_jit(
            lambda st, params, u: mon(
                st,
                eqx.combine(params, static),
                eqx.combine(u, static),
                None,
                lambda m: cross_entropy(m, Xtr, Ytr),
                jr.key(0),
            )[0]
        )
        rows[name] = _best(lambda f=f, st=st: f(st, params, u), 2 if quick else 5)
    return rows


def _best(fn, repeat):
    jax.block_until_ready(fn())
    out = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        out = min(out, time.perf_counter() - t0)
    return out


def run(quick: bool = False) -> Table:
    cfg = (
        dict(p=23, d_model=32, heads=4, width=64, frac=0.6, lr=3e-3, steps=1500)
        if quick
        else dict(p=31, d_model=32, heads=4, width=128, frac=0.6, lr=1e-2, steps=10000)
    )
    every = 50
    table = Table(
        name="monitor",
        title="Training monitor through grokking (one-layer transformer, modular addition)",
        description=__doc__,
        columns=["what", "value", "spread / detail"],
    )
    # 1. overhead of each observable against a chunk of `every` training steps
    kw = {k: cfg[k] for k in ("p", "d_model", "heads", "width", "frac", "lr")}
    times = _chunk_times(every, quick, **kw)
    t_chunk = times.pop("training chunk")
    table.add(f"training: {every} steps (s)", t_chunk, f"{1e3 * t_chunk / every:.2f} ms/step")
    cheap = 0.0
    for name, t in times.items():
        share = t / t_chunk
        if name not in ("sharpness (5 Lanczos)", "local entropy (2 chains x 5 steps)"):
            cheap += share
        table.add(f"monitor: {name} (s per call)", t, f"{100 * share:.2f}% of {every} steps")
    table.add(
        f"recommended: norms, spectra, charges, update split every {every} steps (%)",
        100 * cheap,
        "% of the training time (sum of the parts)",
    )
    sharp = times["sharpness (5 Lanczos)"] / t_chunk / 100
    table.add(
        f"recommended + sharpness every {100 * every} steps (%)",
        100 * (cheap + sharp),
        "% of the training time; local entropy off (its cost per call is above)",
    )
    # 2. grokking with the monitor and the forecasts
    seeds = (0, 1, 2, 3, 4)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        series, group = grokking(every=every, seeds=seeds, record_dir=tmp, **cfg)
        recorded = jq.read_record(os.path.join(tmp, "seed0"))
        assert np.allclose(recorded["test_acc"], series["test_acc"][0])
    wall = time.perf_counter() - t0
    Ts, fits = forecasts(series)
    step = series["step"][0].astype(float)
    table.add(
        "transition step T (test acc >= 0.9), per seed",
        float(np.median(Ts)),
        ", ".join(f"{t:.0f}" for t in Ts),
    )
    mem = [transition(step, series["train_acc"][s], 0.99) for s in range(len(seeds))]
    table.add(
        "memorisation step (train acc >= 0.99), per seed",
        float(np.median(mem)),
        ", ".join(f"{t:.0f}" for t in mem),
    )
    names = list(fits[0])
    for name in names:
        leads, errs = [], []
        for s in range(len(seeds)):
            if not np.isfinite(Ts[s]) or name not in fits[s]:
                continue
            lead, err = lead_and_error(step, fits[s][name], Ts[s])
            leads.append(lead)
            errs.append(err)
        table.add(
            f"{name}: lead within 20% (steps)",
            float(np.median(leads)) if leads else np.nan,
            ", ".join(f"{x:.0f}" for x in leads),
        )
        table.add(
            f"{name}: |error| / T of the forecast at 0.8 T",
            float(np.median(errs)) if errs else np.nan,
            ", ".join(f"{x:.2f}" for x in errs),
        )
    for name in ("monitor/quotient/raw", "monitor/quotient/quotient"):
        s0 = series[name][0]
        table.add(
            f"{name} seed 0: start, at T, end",
            float(s0[0]),
            f"{s0[np.searchsorted(step, Ts[0]) if np.isfinite(Ts[0]) else -1]:.3f}, {s0[-1]:.3f}",
        )
    table.notes.append(
        f"grokking setup: p = {cfg['p']}, d_model = {cfg['d_model']}, {cfg['heads']} heads, MLP "
        f"{cfg['width']}, {int(100 * cfg['frac'])}% of pairs for training, AdamW lr {cfg['lr']}, "
        f"weight decay 1.0, full batch, up to {cfg['steps']} steps (stopped at 1.5 x the last "
        f"seed's transition), {len(seeds)} seeds vmapped ({wall:.0f} s with the monitor). "
        "Smaller than Nanda et al. (p = 113, d_model 128, MLP 512, lr 1e-3, 30%): at that size one "
        "step took about 0.6 s on this loaded 2-core CPU, too slow for 5 seeds x 10k steps."
    )
    table.notes.append(
        "The shock fits use a window of the last 20 monitor points (1000 steps) of log q; the "
        "threshold baseline uses the other seeds' raw norm at their transition."
    )
    return table


if __name__ == "__main__":
    main(run)
