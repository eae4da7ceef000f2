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
import optax


sys.path.insert(0, os.path.dirname(__file__))
from _common import main, Table  # noqa: E402

import jaxstat.quotient as jq  # noqa: E402


class OneLayerTransformer(eqx.Module):
    """Tokens `(a, b, =)` -> logits over `Z_p`, read at the last position."""

    embed: eqx.nn.Embedding
    pos: jax.Array
    attn: eqx.nn.MultiheadAttention
    mlp: eqx.nn.MLP
    unembed: eqx.nn.Linear

    def __init__(self, p, d_model, heads, width, *, key):
        k = jr.split(key, 5)
        self.embed = eqx.nn.Embedding(p + 1, d_model, key=k[0])
        self.pos = 0.1 * jr.normal(k[1], (3, d_model))
        self.attn = eqx.nn.MultiheadAttention(heads, d_model, key=k[2])
        self.mlp = eqx.nn.MLP(d_model, d_model, width, 1, activation=jax.nn.relu, key=k[3])
        self.unembed = eqx.nn.Linear(d_model, p, key=k[4])

    def __call__(self, tokens):
        x = jax.vmap(self.embed)(tokens) + self.pos
        x = x + self.attn(x, x, x)
        h = x[-1]
        return self.unembed(h + self.mlp(h))


def modular_addition(p, frac, seed):
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    X = np.stack([a.ravel(), b.ravel(), np.full(p * p, p)], 1)
    Y = (a.ravel() + b.ravel()) % p
    perm = np.random.default_rng(seed).permutation(p * p)
    n = int(frac * p * p)
    return X[perm[:n]], Y[perm[:n]], X[perm[n:]], Y[perm[n:]]


def _ce(model, X, Y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(jax.vmap(model)(X), Y))


def _acc(model, X, Y):
    return jnp.mean(jnp.argmax(jax.vmap(model)(X), -1) == Y)


def make_monitor(group, sharpness_every=10, with_split=True, with_invariants=True):
    obs = {
        "raw": jq.RawNorms(),
        "quotient": jq.QuotientNorm(group),
        "charges": jq.Charges(group),
    }
    if with_invariants:
        obs["invariants"] = jq.InvariantSpectra(group, top=2)
    if with_split:
        obs["update_split"] = jq.GradientSplit(group)
    if sharpness_every:
        obs["sharpness"] = jq.Every(jq.SharpnessEstimate(num_iterations=5), sharpness_every)
    return jq.Monitor(obs)


def grokking(
    *,
    p=31,
    d_model=32,
    heads=4,
    width=128,
    frac=0.5,
    lr=3e-3,
    weight_decay=1.0,
    steps=6000,
    every=50,
    seeds=(0, 1, 2, 3, 4),
    record_dir=None,
    monitor=True,
    stop_early=True,
    sharpness_every=10,
    with_invariants=True,
):
    """Train one transformer per seed (vmapped over seeds: initialisation and data split),
    monitoring every `every` steps; returns `{name: array (seeds, points)}` with `step`,
    train/test loss and accuracy and the monitor's observables, flattened by path."""
    seeds = tuple(seeds)
    data = [modular_addition(p, frac, s) for s in seeds]
    Xtr, Ytr, Xte, Yte = (jnp.asarray(np.stack(z)) for z in zip(*data))
    models = [OneLayerTransformer(p, d_model, heads, width, key=jr.key(s)) for s in seeds]
    group = jq.symmetry(models[0])
    params = jtu_stack([eqx.filter(m, eqx.is_inexact_array) for m in models])
    static = eqx.filter(models[0], eqx.is_inexact_array, inverse=True)
    opt = optax.adamw(lr, b1=0.9, b2=0.98, weight_decay=weight_decay)
    mon = make_monitor(group, sharpness_every, with_invariants=with_invariants) if monitor else None

    def one_seed_chunk(params, opt_state, mstate, key, Xtr, Ytr, Xte, Yte):
        def loss(p_):
            return _ce(eqx.combine(p_, static), Xtr, Ytr)

        def step(carry, _):
            params, opt_state = carry
            g = jax.grad(loss)(params)
            u, opt_state = opt.update(g, opt_state, params)
            return (optax.apply_updates(params, u), opt_state), None

        (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), None, length=every - 1)
        # the last step of the chunk, with the monitor on its state
        g = jax.grad(loss)(params)
        u, opt_state = opt.update(g, opt_state, params)
        model = eqx.combine(params, static)
        out = {
            "train_loss": loss(params),
            "test_loss": _ce(model, Xte, Yte),
            "train_acc": _acc(model, Xtr, Ytr),
            "test_acc": _acc(model, Xte, Yte),
        }
        if mon is not None:
            obs, mstate = mon(
                mstate,
                model,
                eqx.combine(u, static),
                opt_state,
                lambda m: _ce(m, Xtr, Ytr),
                key,
            )
            out["monitor"] = obs
        return optax.apply_updates(params, u), opt_state, mstate, out

    chunk = eqx.filter_jit(jax.vmap(one_seed_chunk))
    opt_state = jax.vmap(opt.init)(params)
    mstate = (
        jax.vmap(lambda p_: mon.init(eqx.combine(p_, static)))(params) if mon is not None else None
    )
    recorders = None
    if record_dir is not None:
        recorders = [jq.Recorder(os.path.join(record_dir, f"seed{s}"), interval=20) for s in seeds]
    series = []
    key = jr.key(1234)
    for i in range(steps // every):
        key, sub = jr.split(key)
        params, opt_state, mstate, out = chunk(
            params, opt_state, mstate, jr.split(sub, len(seeds)), Xtr, Ytr, Xte, Yte
        )
        out = jax.tree.map(np.asarray, out)
        if recorders is not None:
            for j, r in enumerate(recorders):
                r.record(jax.tree.map(lambda x: x[j], out), step=(i + 1) * every)
        out["step"] = np.full(len(seeds), (i + 1) * every)
        series.append(out)
        # stop once every seed has generalised and run on for half its transition time again
        reached = [
            transition(
                np.array([o["step"][j] for o in series]),
                np.array([o["test_acc"][j] for o in series]),
            )
            for j in range(len(seeds))
        ]
        if stop_early and np.all(np.isfinite(reached)) and (i + 1) * every >= 1.5 * max(reached):
            break
    if recorders is not None:
        for r in recorders:
            r.close()
    stacked = jax.tree.map(lambda *xs: np.stack(xs, axis=1), *series)
    return _flatten(stacked), group


def jtu_stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _flatten(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _flatten(v, name + "/")
        else:
            out[name] = v
    return out


def transition(step, test_acc, level=0.9):
    """The first step with test accuracy >= level (inf if never)."""
    hit = np.nonzero(test_acc >= level)[0]
    return float(step[hit[0]]) if hit.size else np.inf


def lead_and_error(step, forecasts, T, tolerance=0.2, at=0.8):
    """Lead: `T - t_i`, `t_i` the first issue time from which all forecasts before `T` are within
    `tolerance * T` of `T` (0 if none); error: `|f - T| / T` of the last forecast issued at or
    before `at * T` (inf if none was issued)."""
    before = step < T
    good = np.abs(forecasts - T) <= tolerance * T
    lead = 0.0
    idx = np.nonzero(before)[0]
    for i in idx:
        if np.all(good[i : idx[-1] + 1]):
            lead = T - step[i]
            break
    at_idx = np.nonzero(step <= at * T)[0]
    err = np.abs(forecasts[at_idx[-1]] - T) / T if at_idx.size else np.inf
    return lead, err


def forecasts(series, window=20, max_horizon=1e5):
    """Per seed: the transition time and the four online forecasts."""
    step = series["step"][0].astype(float)
    n = series["step"].shape[0]
    Ts = np.array([transition(step, series["test_acc"][s]) for s in range(n)])
    raw = series["monitor/raw/total"]
    quotient = series["monitor/quotient/quotient"]
    out = []
    for s in range(n):
        fit = {}
        for name, q in [
            ("shock fit, test loss", series["test_loss"][s]),
            ("shock fit, quotient norm", quotient[s]),
            ("shock fit, raw norm (baseline b)", raw[s]),
        ]:
            f = jq.forecast_series(step, np.log(q), window=window, max_horizon=max_horizon)
            fit[name] = np.asarray(f.time)
        others = [i for i in range(n) if i != s and np.isfinite(Ts[i])]
        if others:
            level = np.mean([raw[i][np.searchsorted(step, Ts[i])] for i in others])
            fit["raw-norm threshold (baseline a)"] = np.asarray(
                jq.threshold_crossing(step, raw[s], threshold=level, window=window)
            )
        out.append(fit)
    return Ts, out


def _chunk_times(every, quick, **kw):
    """Per-chunk seconds without and with the monitor (compiled once, timed on later calls)."""
    p, d, heads, width = kw["p"], kw["d_model"], kw["heads"], kw["width"]
    Xtr, Ytr, Xte, Yte = (jnp.asarray(z) for z in modular_addition(p, kw["frac"], 0))
    model = OneLayerTransformer(p, d, heads, width, key=jr.key(0))
    group = jq.symmetry(model)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt = optax.adamw(kw["lr"], b1=0.9, b2=0.98, weight_decay=1.0)

    def loss(p_):
        return _ce(eqx.combine(p_, static), Xtr, Ytr)

    @jax.jit
    def train(params, opt_state):
        def step(carry, _):
            params, opt_state = carry
            u, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
            return (optax.apply_updates(params, u), opt_state), None

        return jax.lax.scan(step, (params, opt_state), None, length=every)[0]

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
                lambda m: _ce(m, Xtr, Ytr),
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
    table.add(
        f"training: {every} steps (s, under load)", t_chunk, f"{1e3 * t_chunk / every:.2f} ms/step"
    )
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
        "Timings were taken on a shared 2-core machine under heavy load (load average well above "
        "the core count): the overhead fractions are indicative only. Accuracy, transition and "
        "forecast figures do not depend on the load."
    )
    table.notes.append(
        "The shock fits use a window of the last 20 monitor points (1000 steps) of log q; the "
        "threshold baseline uses the other seeds' raw norm at their transition."
    )
    return table


if __name__ == "__main__":
    main(run)
