"""Alignment of two trained networks modulo their symmetry group, and the cost of quotient
observables.

Two ReLU MLPs 64-512-512-10 are trained on scikit-learn's digits (1,437 training images, Adam,
full batch) from different seeds. The loss along the straight segment between them has a barrier
`B = max_t [L((1 - t) a + t b) - ((1 - t) L(a) + t L(b))]` (test cross-entropy); after aligning the
second network to the first modulo unit permutations and positive rescalings
(`jaxstat.quotient.align`: balanced rescaling, then weight matching by linear assignment) the
barrier should nearly vanish for wide networks (git-re-basin's observation). The peer is an
independent numpy + scipy implementation of weight matching (permutations only, the same
coordinate-descent algorithm), sharing no code with jaxstat; both are timed in the same run and
both barriers reported. The last rows time the invariants, canonical form and conserved charges of
a transformer block (`eqx.nn.MultiheadAttention` + MLP) against one Adam training step of it.
"""

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from _common import main, Table, timeit
from scipy.optimize import linear_sum_assignment
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import jaxstat.quotient as jq


def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    return jnp.asarray(Xtr), jnp.asarray(ytr), jnp.asarray(Xte), jnp.asarray(yte)


def cross_entropy(model, X, y):
    logits = jax.vmap(model)(X)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def train(model, X, y, steps, lr=1e-3):
    opt = optax.adam(lr)

    @eqx.filter_jit
    def run(model):
        params, static = eqx.partition(model, eqx.is_inexact_array)

        def step(carry, _):
            params, state = carry
            loss, g = jax.value_and_grad(lambda p: cross_entropy(eqx.combine(p, static), X, y))(
                params
            )
            u, state = opt.update(g, state, params)
            return (optax.apply_updates(params, u), state), loss

        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
        return eqx.combine(params, static)

    return run(model)


def numpy_weight_matching(wa, ba, wb, bb, rng, max_iter=100):
    """Independent peer: permutations `P_l` of the hidden units of a plain MLP (weights `w[l]` of
    shape (out, in), biases `b[l]`) maximising `sum_l <W^a_l, P_l W^b_l P_{l-1}^T>`, by coordinate
    descent over the layers in random order, each a linear assignment (scipy). Returns the
    permutations (`perm[l][i]` = the unit of b matched to unit i of a)."""
    L = len(wa)
    perms = [np.arange(w.shape[0]) for w in wa[:-1]]
    for _ in range(max_iter):
        improved = False
        for l in rng.permutation(L - 1):
            prev = perms[l - 1] if l > 0 else np.arange(wa[0].shape[1])
            nxt = perms[l + 1] if l + 1 < L - 1 else np.arange(wa[-1].shape[0])
            # Score of matching unit i of a with unit j of b.
            A = wa[l] @ wb[l][:, prev].T + np.outer(ba[l], bb[l])
            A += wa[l + 1].T @ wb[l + 1][nxt, :]
            _, col = linear_sum_assignment(A, maximize=True)
            old = np.sum(A[np.arange(len(col)), perms[l]])
            new = np.sum(A[np.arange(len(col)), col])
            if new > old + 1e-12:
                perms[l], improved = col, True
        if not improved:
            break
    return perms


def permute_numpy(wb, bb, perms):
    w, b = [x.copy() for x in wb], [x.copy() for x in bb]
    for l, p in enumerate(perms):
        w[l], b[l] = w[l][p], b[l][p]
        w[l + 1] = w[l + 1][:, p]
    return w, b


def with_arrays(mlp, w, b):
    for l in range(len(w)):
        mlp = eqx.tree_at(
            lambda m, l=l: (m.layers[l].weight, m.layers[l].bias),
            mlp,
            (jnp.asarray(w[l]), jnp.asarray(b[l])),
        )
    return mlp


def arrays(mlp):
    return (
        [np.asarray(layer.weight, np.float64) for layer in mlp.layers],
        [np.asarray(layer.bias, np.float64) for layer in mlp.layers],
    )


class Block(eqx.Module):
    """A transformer block without normalisation: `h = x + attn(x)`, `out = h + mlp(h)`; its
    symmetry group is derived from its children (attention GL x head permutations, MLP units)."""

    attn: eqx.nn.MultiheadAttention
    mlp: eqx.nn.MLP


def transformer_block(key, d_model=128, heads=4, d_mlp=512):
    k1, k2 = jr.split(key)
    attn = eqx.nn.MultiheadAttention(heads, d_model, key=k1)
    mlp = eqx.nn.MLP(d_model, d_model, d_mlp, 1, activation=jax.nn.relu, key=k2)
    return attn, mlp


def run(quick: bool = False) -> Table:
    width, steps = (128, 300) if quick else (512, 1500)
    table = Table(
        name="quotient",
        title=f"Alignment of two digits MLPs 64-{width}-{width}-10, and quotient observables",
        description=__doc__,
        columns=[
            "what",
            "time (ms)",
            "test loss barrier",
            "ratio (to the peer; block rows: to a step)",
        ],
    )
    Xtr, ytr, Xte, yte = digits()
    models = [
        train(
            eqx.nn.MLP(64, 10, width, 2, activation=jax.nn.relu, key=jr.key(seed)), Xtr, ytr, steps
        )
        for seed in (0, 1)
    ]
    a, b = models
    loss = lambda m: cross_entropy(m, Xte, yte)  # noqa: E731
    accs = [float(jnp.mean(jnp.argmax(jax.vmap(m)(Xte), -1) == yte)) for m in models]
    _, _, naive = jq.loss_barrier(loss, a, b)

    group = jq.symmetry(a)
    t0 = time.perf_counter()
    jax.block_until_ready(jq.align(a, b, group))  # first call: includes compilation
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    ra, rb = jax.block_until_ready(jq.align(a, b, group))
    t_jaxstat = time.perf_counter() - t0
    _, _, aligned = jq.loss_barrier(loss, ra, rb)

    wa, ba = arrays(a)
    wb, bb = arrays(b)
    t0 = time.perf_counter()
    perms = numpy_weight_matching(wa, ba, wb, bb, np.random.default_rng(0))
    t_peer = time.perf_counter() - t0
    pb = with_arrays(b, *permute_numpy(wb, bb, perms))
    _, _, peer = jq.loss_barrier(loss, a, pb)

    table.add("no alignment (straight segment)", 0.0, float(naive), float("nan"))
    table.add("numpy + scipy weight matching (peer)", 1e3 * t_peer, float(peer), 1.0)
    table.add(
        "jaxstat.quotient.align (balance + matching)",
        1e3 * t_jaxstat,
        float(aligned),
        t_jaxstat / t_peer,
    )
    table.notes.append(
        f"jaxstat.quotient.align: first call {t_first:.1f} s including compilation; the row "
        "times a second call."
    )
    table.notes.append(
        f"test accuracy of the two MLPs: {accs[0]:.3f}, {accs[1]:.3f}; {steps} full-batch Adam "
        "steps, learning rate 1e-3; barrier = max over 25 points of the test cross-entropy above "
        "the chord."
    )

    # Two small CNNs (channel permutations and positive rescalings through ReLU and max pooling).
    def cnn(key):
        k = jr.split(key, 3)
        return eqx.nn.Sequential(
            [
                eqx.nn.Lambda(lambda x: x.reshape(1, 8, 8)),
                eqx.nn.Conv2d(1, 16, 3, padding=1, key=k[0]),
                eqx.nn.Lambda(jax.nn.relu),
                eqx.nn.MaxPool2d(2, 2),
                eqx.nn.Conv2d(16, 16, 3, padding=1, key=k[1]),
                eqx.nn.Lambda(jax.nn.relu),
                eqx.nn.Lambda(jnp.ravel),
                eqx.nn.Linear(16 * 4 * 4, 10, key=k[2]),
            ]
        )

    ca, cb = (train(cnn(jr.key(10 + seed)), Xtr, ytr, steps // 2) for seed in (0, 1))
    cnn_accs = [float(jnp.mean(jnp.argmax(jax.vmap(m)(Xte), -1) == yte)) for m in (ca, cb)]
    _, _, cnn_naive = jq.loss_barrier(loss, ca, cb)
    cgroup = jq.symmetry(ca)
    jax.block_until_ready(jq.align(ca, cb, cgroup))
    t0 = time.perf_counter()
    rca, rcb = jax.block_until_ready(jq.align(ca, cb, cgroup))
    t_cnn = time.perf_counter() - t0
    _, _, cnn_aligned = jq.loss_barrier(loss, rca, rcb)
    table.add("CNN: no alignment", 0.0, float(cnn_naive), float("nan"))
    table.add("CNN: jaxstat.quotient.align", 1e3 * t_cnn, float(cnn_aligned), float("nan"))
    table.notes.append(
        f"CNN conv16-pool-conv16-linear, test accuracy {cnn_accs[0]:.3f}, {cnn_accs[1]:.3f} "
        f"({steps // 2} Adam steps); no independent peer for convolutions."
    )

    # Quotient observables of a transformer block, per call, against one training step.
    attn, mlp = transformer_block(jr.key(2))
    block = Block(attn, mlp)
    g = jq.symmetry(Block(attn, mlp))
    x = jr.normal(jr.key(3), (64, 128))

    def block_loss(block):
        h = x + block.attn(x, x, x)
        return jnp.mean((h + jax.vmap(block.mlp)(h)) ** 2)

    opt = optax.adam(1e-3)
    params, static = eqx.partition(block, eqx.is_inexact_array)
    state = opt.init(params)

    @jax.jit
    def train_step(params, state):
        grads = jax.grad(lambda p: block_loss(eqx.combine(p, static)))(params)
        u, state = opt.update(grads, state, params)
        return optax.apply_updates(params, u), state

    t_step = timeit(train_step, params, state, repeat=20)
    table.add("transformer block: one Adam step (reference)", 1e3 * t_step, float("nan"), 1.0)
    for what, fn in [
        ("invariants", g.invariants),
        ("canonical form", g.canonicalize),
        ("conserved charges", g.charges),
    ]:
        f = eqx.filter_jit(lambda p, fn=fn: fn(eqx.combine(p, static)))
        t = timeit(f, params, repeat=20)
        table.add(f"transformer block: {what}", 1e3 * t, float("nan"), t / t_step)
    return table


if __name__ == "__main__":
    main(run)
