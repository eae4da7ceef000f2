"""Learning the graph with `strata` on real data, and training throughput at scale.

**Semi-supervised node classification.** Two data sets that ship with scikit-learn: digits (1,797
images, 64 pixels / 16) and breast cancer (569 tumours, 30 features, standardised), each as a
symmetrised 10-nearest-neighbour graph with Gaussian weights (`jaxstat.graphs.knn_graph`), 10% of
the nodes labelled at random. Model: one stationary layer (gradient model, quadratic potential,
mu = 0.05, held fixed) whose source is the one-hot labels given to it,
`psi* = (L_w + mu I)^{-1} Y_given` (untrained, this is label propagation), logits `T psi*` with a
trained temperature `T` (initially 10). Trained end to end, graph weights included:
`strata.partition(natural_gradient(1.0, ShiftedEntropy(0.01), momentum=0.9), adam(0.05))` (graph
weights on the stratified space, `log T` with Adam), `strata.fit` for 60 steps with the label trick
(each step half of the training nodes are hidden from the input and are the cross-entropy
targets). **Safeguard** (`strata.Validation`): 20% of the labelled nodes of each class
(`strata.validation_split`) are held out of the training loss; their cross-entropy, given the
training labels, is the validation loss; `fit` returns the parameters that are best on it, rejects
an update that raises it by more than 50% or whose solve fails (parameters and optimiser state
return to those before it), and stops after 20 updates without a new best. At prediction all
labelled nodes are given. **Splits**: the recipe (mu, rates, step count) was chosen on digits'
label splits of seeds 0-2 and is used unchanged on breast cancer; the safeguard's settings (20%,
50%, 20) were fixed before any evaluation and only checked on seeds 0-4; the figures are on seeds
100-119 (`numpy.random.default_rng(seed)`),
which played no part in any choice. Peers on the same splits: scikit-learn `LabelSpreading` and
`LabelPropagation` (kernel knn, defaults, on the same features) and a logistic regression on the
labelled points. Before the safeguard, the digits recipe gave 0.979 +- 0.006 on seeds 0-4 but
0.971 +- 0.025 on ten fresh splits (below LabelPropagation there), and on breast-cancer seed 0
training collapsed to 0.357. Karate club (networkx, 34 nodes, the club split, 2 labelled nodes
per class, seeds 0-4; one per class held out for validation): the same model and recipe on the
weighted graph (mu = 0.1); peers: LabelSpreading / LabelPropagation with the graph's adjacency as
kernel. Accuracy is on the unlabelled nodes; time is per split (jaxstat: training + prediction,
after one compilation shared by the splits, reported in the notes), measured on a loaded machine.

**Throughput.** A two-layer stationary network (`feature_layer` 8 -> 16, ReLU, `feature_layer`
16 -> 4, quadratic potential mu = 1, float32) on the k-nearest-neighbour graph of n random points
in the unit cube, loss MSE to random targets, one training step = forward (two Newton-GMRES
solves) + implicit adjoint (two transposed solves) + the strata/Adam update. Peer: the same four
linear block solves with `scipy.sparse.linalg.cg` (one column at a time, tolerance 1e-4), the
dominant cost of a step, on the CPU. Scaling with the number of edges: log-log slope of the step
time against E at fixed n.
"""

import json
import sys
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import networkx as nx
import numpy as np
import optax
from _common import main, RESULTS, Table

import jaxstat.graphs as jg
import jaxstat.stationary as js
import jaxstat.strata as st


try:
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.semi_supervised import LabelPropagation, LabelSpreading
except ImportError:  # pragma: no cover - peers missing
    load_digits = None


SEEDS = 5  # karate club splits
KARATE_STEPS, KARATE_LR = 60, 1.0
# Semi-supervised digits / breast cancer: every choice below was made on the label splits of
# DESIGN_SEEDS; the reported figures are on EVAL_SEEDS, which played no part in any choice.
DESIGN_SEEDS = list(range(5))
EVAL_SEEDS = list(range(100, 120))
MU, STEPS, LR_GRAPH = 0.05, 60, 1.0
VAL_FRACTION, PATIENCE, MAX_INCREASE = 0.2, 20, 0.5


# ---------------------------------------------------------------------------------------------
# Semi-supervised node classification.


class Classifier(eqx.Module):
    """Logits `exp(log_temperature) psi*` of a label-propagation stationary layer
    `psi* = (L_w + mu I)^{-1} Y_given` whose graph weights and logit scale are trained."""

    layer: js.StationaryLayer
    log_temperature: jax.Array

    def __call__(self, given):
        # A failed solve (e.g. GMRES stagnating on a graph that a bad step made ill-conditioned)
        # gives non-finite logits, hence a non-finite loss: `strata.fit` rejects that step.
        # Only the graph's weights and the temperature are trained: the model's own parameters
        # (mu, gamma, kappa are arrays too) are held fixed, so Adam cannot drive mu to 0.
        layer = eqx.tree_at(lambda l: l.model, self.layer, jax.lax.stop_gradient(self.layer.model))
        sol = layer.solve(given, throw=False)
        psi = jnp.where(sol.result == js.RESULTS.successful, sol.value, jnp.nan)
        return jnp.exp(self.log_temperature) * psi


def classifier(graph, mu):
    layer = js.StationaryLayer(
        graph, js.GradientModel(js.Quadratic(mu)), js.DirectSource(), js.Identity()
    )
    return Classifier(layer, jnp.log(jnp.asarray(10.0, graph.weights.dtype)))


class LabelTrickLoss(eqx.Module):
    """Cross-entropy on the training nodes hidden from the input at this step (each training node
    hidden with probability 1/2). A Module, so that the splits (different masks) share one
    compilation of `strata.fit`."""

    onehot: jax.Array  # (n, C)
    train: jax.Array  # (n,) 0/1: the labelled nodes the loss may use

    def __call__(self, clf, key):
        hide = jr.bernoulli(key, 0.5, self.train.shape).astype(self.train.dtype)
        hide = hide * self.train
        logits = clf(self.onehot * (self.train - hide)[:, None])
        ce = -jnp.sum(jax.nn.log_softmax(logits) * self.onehot, axis=1)
        return jnp.sum(ce * hide) / jnp.maximum(jnp.sum(hide), 1)


class HeldOutLoss(eqx.Module):
    """Cross-entropy at the validation nodes, given the training labels only."""

    onehot: jax.Array  # (n, C)
    train: jax.Array  # (n,) 0/1
    validation: jax.Array  # (n,) 0/1

    def __call__(self, clf):
        logits = clf(self.onehot * self.train[:, None])
        ce = -jnp.sum(jax.nn.log_softmax(logits) * self.onehot, axis=1)
        return jnp.sum(ce * self.validation) / jnp.sum(self.validation)


@eqx.filter_jit
def predict(clf, onehot, labelled):
    return jnp.argmax(clf(onehot * labelled[:, None]), axis=1)


def make_tx(lr_graph):
    return st.partition(
        st.natural_gradient(lr_graph, st.ShiftedEntropy(0.01), momentum=0.9), optax.adam(0.05)
    )


def jaxstat_semisupervised(graph, y, masks, seeds, *, mu, steps, lr_graph, guarded=True):
    """Train on each split; with `guarded`, the labelled nodes are split 80/20 (per class) into
    the training nodes of the loss and validation nodes for `strata.Validation`."""
    dtype = graph.weights.dtype
    C = int(y.max()) + 1
    onehot = jax.nn.one_hot(y, C, dtype=dtype)
    tx = make_tx(lr_graph)
    res = dict(acc=[], acc0=[], time=[], alive=[], best=[], rejected=[], compile=None)
    for seed, mask in zip(seeds, masks):
        labelled = jnp.asarray(mask, dtype)
        clf = classifier(graph, mu)
        pred0 = np.asarray(predict(clf, onehot, labelled))  # untrained: label propagation
        res["acc0"].append(float(np.mean(pred0[~mask] == y[~mask])))
        if guarded:
            train, val = st.validation_split(mask, VAL_FRACTION, key=jr.key(seed), classes=y)
            assert not np.any((train | val) & ~mask) and not np.any(train & val)
            loss = LabelTrickLoss(onehot, jnp.asarray(train, dtype))
            validation = st.Validation(
                HeldOutLoss(onehot, jnp.asarray(train, dtype), jnp.asarray(val, dtype)),
                patience=PATIENCE,
                max_increase=MAX_INCREASE,
            )
        else:
            loss, validation = LabelTrickLoss(onehot, labelled), None

        def train_and_predict(k):
            out = st.fit(loss, clf, tx, steps, key=k, validation=validation)
            return out, np.asarray(predict(out.model, onehot, labelled))

        if res["compile"] is None:  # compile once (shared by the splits: same shapes)
            t0 = time.perf_counter()
            train_and_predict(jr.key(10_000))
            res["compile"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        out, pred = train_and_predict(jr.key(seed))
        res["time"].append(time.perf_counter() - t0)
        res["acc"].append(float(np.mean(pred[~mask] == y[~mask])))
        res["alive"].append(int(np.sum(np.asarray(out.model.layer.graph.weights) > 0)))
        res["best"].append(int(out.best_step))
        if guarded:
            res["rejected"].append(int(out.steps_run - np.sum(np.asarray(out.accepted))))
    return res


def sklearn_peer(make, X, y, masks):
    accs, times = [], []
    for mask in masks:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LabelPropagation's max_iter warning
            pred = make().fit(X, np.where(mask, y, -1)).transduction_
        times.append(time.perf_counter() - t0)
        accs.append(float(np.mean(pred[~mask] == y[~mask])))
    return accs, times


def logistic_peer(X, y, masks):
    accs, times = [], []
    for mask in masks:
        t0 = time.perf_counter()
        pred = LogisticRegression(max_iter=2000).fit(X[mask], y[mask]).predict(X)
        times.append(time.perf_counter() - t0)
        accs.append(float(np.mean(pred[~mask] == y[~mask])))
    return accs, times


def _acc(accs):
    return f"{np.mean(accs):.3f} ± {np.std(accs):.3f}"


def _per(accs):
    return ", ".join(f"{a:.3f}" for a in accs)


def label_masks(n, seeds, fraction=0.1):
    masks = []
    for seed in seeds:
        mask = np.zeros(n, bool)
        mask[np.random.default_rng(seed).choice(n, int(fraction * n), replace=False)] = True
        masks.append(mask)
    return masks


def load(name):
    """Features (standardised for breast cancer, pixels / 16 for digits), labels, kNN graph."""
    if name == "digits":
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
    else:
        X, y = load_breast_cancer(return_X_y=True)
        X = (X - X.mean(0)) / X.std(0)
    return X, y, jg.knn_graph(X, 10, dtype=jnp.float32)


def semisupervised_rows(table, name, quick):
    X, y, graph = load(name)
    seeds = list(EVAL_SEEDS[:2] if quick else EVAL_SEEDS)
    masks = label_masks(len(y), seeds)
    steps = 10 if quick else STEPS
    task = f"{name} n={len(y)}, E={graph.num_edges}, 10% labels"
    r = jaxstat_semisupervised(graph, y, masks, seeds, mu=MU, steps=steps, lr_graph=LR_GRAPH)
    peers = {
        "sklearn LabelSpreading (knn)": sklearn_peer(
            lambda: LabelSpreading(kernel="knn"), X, y, masks
        ),
        "sklearn LabelPropagation (knn)": sklearn_peer(
            lambda: LabelPropagation(kernel="knn"), X, y, masks
        ),
        "sklearn LogisticRegression (labelled only)": logistic_peer(X, y, masks),
    }
    best_name, (best, _) = max(peers.items(), key=lambda kv: np.mean(kv[1][0]))
    wins = int(np.sum(np.asarray(r["acc"]) > np.asarray(best)))
    ties = int(np.sum(np.asarray(r["acc"]) == np.asarray(best)))
    table.add(
        task,
        f"jaxstat stationary layer + strata graph learning ({steps} steps, validated)",
        _acc(r["acc"]),
        float(np.mean(r["time"])),
        f"{np.mean(r['acc']) - np.mean(best):+.3f} vs best peer",
        f"per split {_per(r['acc'])}; min {min(r['acc']):.3f}; beats {best_name.split(' (')[0]} "
        f"on {wins}/{len(seeds)} splits (ties {ties}); best step (median) "
        f"{int(np.median(r['best']))}, rejected steps {sum(r['rejected'])} in all; edges alive "
        f"{int(np.mean(r['alive']))}/{graph.num_edges} (mean); compile {r['compile']:.1f} s",
    )
    table.add(
        task,
        "  the same layer untrained (= label propagation)",
        _acc(r["acc0"]),
        "",
        "",
        f"per split {_per(r['acc0'])}",
    )
    for peer, (a, t) in peers.items():
        table.add(task, peer, _acc(a), float(np.mean(t)), "", f"per split {_per(a)}")


def design(name, variant):
    """The design study (seeds 0-4 only; prints, saves nothing):
    `python benchmarks/bench_strata.py --design digits guarded|plain`."""
    X, y, graph = load(name)
    masks = label_masks(len(y), DESIGN_SEEDS)
    r = jaxstat_semisupervised(
        graph,
        y,
        masks,
        DESIGN_SEEDS,
        mu=MU,
        steps=STEPS,
        lr_graph=LR_GRAPH,
        guarded=variant == "guarded",
    )
    a = [s for s in sklearn_peer(lambda: LabelPropagation(kernel="knn"), X, y, masks)[0]]
    print(
        f"{name} {variant}: {_acc(r['acc'])} per split {_per(r['acc'])}; best steps {r['best']}"
        f"; rejected {r['rejected']}; untrained {_acc(r['acc0'])}; LabelPropagation {_acc(a)} "
        f"({_per(a)}); time {np.mean(r['time']):.1f} s/split, compile {r['compile']:.1f} s"
    )


def karate_rows(table, quick):
    G = nx.karate_club_graph()
    graph, nodes = jg.from_networkx(G)
    graph = eqx.tree_at(lambda g: g.weights, graph, graph.weights.astype(jnp.float32))
    y = np.array([0 if G.nodes[v]["club"] == "Mr. Hi" else 1 for v in nodes])
    n = len(y)
    masks = []
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        mask = np.zeros(n, bool)
        for c in (0, 1):
            mask[rng.choice(np.flatnonzero(y == c), 2, replace=False)] = True
        masks.append(mask)
    r = jaxstat_semisupervised(
        graph, y, masks, range(SEEDS), mu=0.1, steps=KARATE_STEPS, lr_graph=KARATE_LR
    )
    A = -np.asarray(graph.as_dense(potential=False))
    np.fill_diagonal(A, 0.0)

    def kernel(a, b):  # the graph's adjacency as the kernel of the sklearn peers
        return A[np.ix_(a[:, 0].astype(int), b[:, 0].astype(int))]

    idx = np.arange(n, dtype=float)[:, None]
    task = f"karate club n={n}, E={graph.num_edges}, 2 labels per class"
    table.add(
        task,
        f"jaxstat stationary layer + strata graph learning ({KARATE_STEPS} steps, validated)",
        _acc(r["acc"]),
        float(np.mean(r["time"])),
        "",
        f"per split {_per(r['acc'])}; best step {r['best']}; edges alive "
        f"{int(np.mean(r['alive']))}/{graph.num_edges}; compile {r['compile']:.1f} s",
    )
    table.add(task, "  the same layer untrained (= label propagation)", _acc(r["acc0"]), "", "", "")
    for name, make in [
        ("sklearn LabelSpreading (graph kernel)", lambda: LabelSpreading(kernel=kernel)),
        ("sklearn LabelPropagation (graph kernel)", lambda: LabelPropagation(kernel=kernel)),
    ]:
        a, t = sklearn_peer(make, idx, y, masks)
        table.add(task, name, _acc(a), float(np.mean(t)), "", "")


# ---------------------------------------------------------------------------------------------
# Throughput.


class TwoLayer(eqx.Module):
    l1: js.StationaryLayer
    l2: js.StationaryLayer

    def __call__(self, x):
        return self.l2(jax.nn.relu(self.l1(x)))


def two_layer(graph, key):
    k1, k2 = jr.split(key)
    model = js.GradientModel(js.Quadratic(1.0))
    l1 = js.feature_layer(graph, model, 8, 16, key=k1, dtype=jnp.float32)
    l2 = js.feature_layer(graph, model, 16, 4, key=k2, dtype=jnp.float32)
    return TwoLayer(l1, l2)


class MSE(eqx.Module):
    x: jax.Array
    target: jax.Array

    def __call__(self, model):
        return jnp.mean((model(self.x) - self.target) ** 2)


def scipy_solves(graph, cols=(16, 4, 4, 16)):
    """The four linear block solves of one training step with scipy's CG."""
    s, r = np.asarray(graph.senders), np.asarray(graph.receivers)
    w = np.asarray(graph.weights, np.float64)
    n = graph.num_nodes
    A = sp.coo_matrix((np.r_[w, w], (np.r_[s, r], np.r_[r, s])), shape=(n, n)).tocsr()
    M = (sp.diags(np.asarray(A.sum(1)).ravel() + 1.0) - A).astype(np.float32).tocsr()
    rhs = np.random.default_rng(0).normal(size=(n, max(cols))).astype(np.float32)
    t0 = time.perf_counter()
    for c in cols:
        for j in range(c):
            spla.cg(M, rhs[:, j], rtol=1e-4)
    return time.perf_counter() - t0


def throughput_rows(table, quick):
    sizes = (
        [(2_000, (4, 8))]
        if quick
        else [
            (10_000, (4, 8, 16)),
            (100_000, (4, 8)),
        ]
    )
    for n, ks in sizes:
        pts = np.random.default_rng(0).uniform(size=(n, 3))
        edges, times = [], []
        for k in ks:
            graph = jg.knn_graph(pts, k, dtype=jnp.float32)
            net = two_layer(graph, jr.key(0))
            loss = MSE(jr.normal(jr.key(1), (n, 8)), jr.normal(jr.key(2), (n, 4)))
            tx = st.partition(st.natural_gradient(0.05), optax.adam(1e-3))
            steps = 3
            jax.block_until_ready(st.fit(loss, net, tx, steps).losses)  # compile
            t0 = time.perf_counter()
            jax.block_until_ready(st.fit(loss, net, tx, steps).losses)
            t = (time.perf_counter() - t0) / steps
            peer = scipy_solves(graph)
            edges.append(graph.num_edges)
            times.append(t)
            table.add(
                f"throughput n={n:,}, E={graph.num_edges:,} (k={k}), float32",
                "jaxstat 2-layer train step (strata + adam)",
                "",
                t,
                f"{t / peer:.2f} x scipy CG solves",
                f"{1 / t:.2f} steps/s; scipy CG 4 block solves {peer:.3f} s",
            )
        if len(edges) > 1:
            slope = np.polyfit(np.log(edges), np.log(times), 1)[0]
            table.notes.append(
                f"n = {n:,}: step time ~ E^{slope:.2f} over E = {edges[0]:,} .. {edges[-1]:,}"
            )


def run(quick: bool = False) -> Table:
    table = Table(
        name="strata",
        title="Graph learning with strata: semi-supervised classification and throughput",
        description=__doc__,
        columns=[
            "task",
            "method",
            "accuracy (mean ± std over splits)",
            "time (s)",
            "vs peer",
            "notes",
        ],
    )
    if load_digits is None:
        table.notes.append("scikit-learn / scipy not installed: real-data peers skipped")
    else:
        semisupervised_rows(table, "digits", quick)
        semisupervised_rows(table, "breast cancer", quick)
        karate_rows(table, quick)
    if "--no-throughput" in sys.argv:  # keep the last full run's throughput figures, labelled
        previous = json.loads((RESULTS / "strata-cpu.json").read_text())
        kept = [r for r in previous["rows"] if str(r[0]).startswith("throughput")]
        table.rows += kept
        table.notes += [n for n in previous["notes"] if n.startswith("n = ")]
        load = previous["machine"].get("load", "not recorded")
        table.notes.append(
            "The throughput rows and the E-scaling notes are carried over unchanged from the run "
            f"of {previous['date']} (load average {load}); "
            "this run repeated only the accuracy studies."
        )
    else:
        throughput_rows(table, quick)
    return table


if __name__ == "__main__":
    if "--design" in sys.argv:
        design(*sys.argv[sys.argv.index("--design") + 1 :][:2])
    else:
        main(run)
