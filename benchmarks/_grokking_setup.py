"""The grokking set-up shared by `bench_monitor.py` and `bench_grokking.py`: model, data, training
step, the monitored training loop over vmapped seeds, and the scores of the online forecasts.

A one-layer transformer (token and position embeddings, `eqx.nn.MultiheadAttention`, a ReLU
`eqx.nn.MLP`, a linear unembedding; residual connections, no LayerNorm) learns `a + b mod p` from a
fraction of all pairs, full batch, AdamW (betas 0.9/0.98, weight decay 1.0 by default), as in
Nanda et al.
"""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

import jaxstat.quotient as jq


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
    """All pairs `(a, b, =) -> a + b mod p`, split at random: `(Xtr, Ytr, Xte, Yte)`."""
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    X = np.stack([a.ravel(), b.ravel(), np.full(p * p, p)], 1)
    Y = (a.ravel() + b.ravel()) % p
    perm = np.random.default_rng(seed).permutation(p * p)
    n = int(frac * p * p)
    return X[perm[:n]], Y[perm[:n]], X[perm[n:]], Y[perm[n:]]


def problem(p, d_model, heads, width, frac, seed):
    """The model and data of one seed (the seed draws the initialisation and the split)."""
    model = OneLayerTransformer(p, d_model, heads, width, key=jr.key(seed))
    return model, modular_addition(p, frac, seed)


def cross_entropy(model, X, Y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(jax.vmap(model)(X), Y))


def accuracy(model, X, Y):
    return jnp.mean(jnp.argmax(jax.vmap(model)(X), -1) == Y)


def optimiser(lr, weight_decay=1.0):
    return optax.adamw(lr, b1=0.9, b2=0.98, weight_decay=weight_decay)


def train_steps(opt, loss, params, opt_state, length):
    """`length` full-batch steps of `opt` on `loss(params)`, as one `lax.scan`; returns
    `(params, opt_state)`."""

    def step(carry, _):
        params, opt_state = carry
        u, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
        return (optax.apply_updates(params, u), opt_state), None

    return jax.lax.scan(step, (params, opt_state), None, length=length)[0]


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
    models, data = zip(*(problem(p, d_model, heads, width, frac, s) for s in seeds))
    Xtr, Ytr, Xte, Yte = (jnp.asarray(np.stack(z)) for z in zip(*data))
    group = jq.symmetry(models[0])
    params = jtu_stack([eqx.filter(m, eqx.is_inexact_array) for m in models])
    static = eqx.filter(models[0], eqx.is_inexact_array, inverse=True)
    opt = optimiser(lr, weight_decay)
    mon = make_monitor(group, sharpness_every, with_invariants=with_invariants) if monitor else None

    def one_seed_chunk(params, opt_state, mstate, key, Xtr, Ytr, Xte, Yte):
        def loss(p_):
            return cross_entropy(eqx.combine(p_, static), Xtr, Ytr)

        params, opt_state = train_steps(opt, loss, params, opt_state, every - 1)
        # the last step of the chunk, with the monitor on its state
        g = jax.grad(loss)(params)
        u, opt_state = opt.update(g, opt_state, params)
        model = eqx.combine(params, static)
        out = {
            "train_loss": loss(params),
            "test_loss": cross_entropy(model, Xte, Yte),
            "train_acc": accuracy(model, Xtr, Ytr),
            "test_acc": accuracy(model, Xte, Yte),
        }
        if mon is not None:
            obs, mstate = mon(
                mstate,
                model,
                eqx.combine(u, static),
                opt_state,
                lambda m: cross_entropy(m, Xtr, Ytr),
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
    """Per seed: the transition `T` and `{method: forecast per monitor point}`, each issued online
    from the last `window` monitor points: shock fits on `log` of the test loss, of the quotient
    norm and of the raw norm (baseline b), and the raw norm's linear crossing of the mean raw norm
    at the other seeds' transitions (baseline a)."""
    step = series["step"][0].astype(float)
    n = series["step"].shape[0]
    Ts = np.array([transition(step, series["test_acc"][s]) for s in range(n)])
    raw = series["monitor/raw/total"]
    observables = {
        "shock fit, log test loss": np.log(series["test_loss"]),
        "shock fit, log quotient norm": np.log(series["monitor/quotient/quotient"]),
        "shock fit, log raw norm (baseline b)": np.log(raw),
    }
    out = []
    for s in range(n):
        fit = {
            name: np.asarray(
                jq.forecast_series(step, q[s], window=window, max_horizon=max_horizon).time
            )
            for name, q in observables.items()
        }
        others = [i for i in range(n) if i != s and np.isfinite(Ts[i])]
        if others:
            level = np.mean([raw[i][np.searchsorted(step, Ts[i])] for i in others])
            fit["raw-norm threshold (baseline a)"] = np.asarray(
                jq.threshold_crossing(step, raw[s], threshold=level, window=window)
            )
        out.append(fit)
    return Ts, out
