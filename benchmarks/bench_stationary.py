"""A stationary layer at scale: implicit adjoint against backprop through unrolled iterations.

Layer: gradient model with the Gross-Pitaevskii potential `mu/2 |u|^2 + beta/4 |u|^4` (mu = 1,
beta = 0.5) on a random graph (n = 100,000 nodes, 500,000 edges), 16 float32 features per node,
`s = x W^T + b`, loss `mean(psi*^2)`. Forward: Newton with matrix-free GMRES (jaxstat's default);
backward: the implicit adjoint (one transposed GMRES solve). Peer: the same stationary state by
explicit time stepping of the gradient dynamics `psi <- psi - tau F(psi)` (a fixed-point
iteration), run for the number of steps that reaches the same residual, and differentiated by
backpropagation through the unrolled `lax.scan`. Memory is XLA's compiled temporary-buffer size of
the forward + backward program: it grows with the unrolled steps and not with the solver's.
"""

import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optimistix as optx
from _common import compiled_memory, main, Table, timeit

import jaxstat.graphs as jg
import jaxstat.stationary as js


def run(quick: bool = False) -> Table:
    n, m, d = (10_000, 50_000, 16) if quick else (100_000, 500_000, 16)
    table = Table(
        name="stationary",
        title=f"Stationary layer forward + backward, n = {n:,}, E = {m:,}, d = {d}, float32",
        description=__doc__,
        columns=[
            "method",
            "iterations",
            "residual max|F|",
            "forward (s)",
            "forward+backward (s)",
            "backward / forward",
            "temp memory (MB)",
        ],
    )
    g = jg.random_graph(jr.key(0), n, m, dtype=jnp.float32)
    model = js.GradientModel(js.Quartic(1.0, 0.5))
    layer = js.feature_layer(g, model, d, d, key=jr.key(1), dtype=jnp.float32)
    x = jr.normal(jr.key(2), (n, d), jnp.float32)

    def loss_implicit(layer, x):
        return jnp.mean(layer(x) ** 2)

    fwd = eqx.filter_jit(lambda layer, x: layer.solve(x))
    fb = eqx.filter_jit(eqx.filter_value_and_grad(loss_implicit))
    sol = fwd(layer, x)
    # Same accuracy for both: the solver tolerance (float32 default 1e-4) or the residual reached.
    target = max(float(sol.residual), 1e-4)
    t_f = timeit(fwd, layer, x, repeat=5)
    t_fb = timeit(fb, layer, x, repeat=5)
    params, static = eqx.partition(layer, eqx.is_array)
    mem = compiled_memory(
        lambda p: eqx.filter_value_and_grad(loss_implicit)(eqx.combine(p, static), x), params
    )
    table.add(
        "implicit (Newton-GMRES + implicit adjoint)",
        int(sol.num_steps),
        float(sol.residual),
        t_f,
        t_fb,
        (t_fb - t_f) / t_f,
        mem["temp"] / 2**20,
    )

    # Peer: explicit time stepping psi <- psi - tau F(psi), unrolled and backpropagated.
    H = g.assemble()
    s = layer.source(x)
    psi_star = sol.value
    lipschitz = 2 * float(jnp.max(g.degree())) + 1.0 + 3 * 0.5 * float(jnp.max(psi_star**2))
    tau = 1.0 / lipschitz

    @eqx.filter_jit
    def steps_needed(s):
        def cond(c):
            k, psi = c
            return (jnp.max(jnp.abs(model.residual(psi, s, H))) > target) & (k < 20_000)

        def body(c):
            k, psi = c
            return k + 1, psi - tau * model.residual(psi, s, H)

        return jax.lax.while_loop(cond, body, (0, jnp.zeros_like(s)))[0]

    steps = int(steps_needed(s))

    def unrolled_layer(layer, x, num):
        H = layer.graph.assemble()
        s = layer.source(x)

        def body(psi, _):
            return psi - tau * layer.model.residual(psi, s, H), None

        return jax.lax.scan(body, jnp.zeros_like(s), length=num)[0]

    for frac in (0.25, 0.5, 1.0):
        num = max(1, int(round(frac * steps)))
        f_u = eqx.filter_jit(lambda layer, x: unrolled_layer(layer, x, num))
        fb_u = eqx.filter_jit(
            eqx.filter_value_and_grad(lambda layer, x: jnp.mean(unrolled_layer(layer, x, num) ** 2))
        )
        res = float(jnp.max(jnp.abs(model.residual(f_u(layer, x), s, H))))
        mem_u = compiled_memory(
            lambda p: eqx.filter_value_and_grad(lambda l: jnp.mean(unrolled_layer(l, x, num) ** 2))(
                eqx.combine(p, static)
            ),
            params,
        )
        if frac == 1.0:
            tu_f = timeit(f_u, layer, x, repeat=3)
            tu_fb = timeit(fb_u, layer, x, repeat=3)
            table.add(
                "unrolled time stepping + backprop (peer)",
                num,
                res,
                tu_f,
                tu_fb,
                (tu_fb - tu_f) / tu_f,
                mem_u["temp"] / 2**20,
            )
            table.notes.append(
                f"implicit / unrolled forward+backward time: {t_fb / tu_fb:.3f}; "
                f"temp memory: {mem['temp'] / mem_u['temp']:.4f}"
            )
        else:
            table.add(
                f"unrolled, {frac:.0%} of the steps (memory only)",
                num,
                res,
                float("nan"),
                float("nan"),
                float("nan"),
                mem_u["temp"] / 2**20,
            )
    # The implicit layer's memory does not depend on how many solver iterations it takes.
    for tol, forcing in ((1e-2, 0.3), (1e-4, 1e-6)):
        solver = optx.Newton(tol, tol, linear_solver=js.GMRES(rtol=forcing, atol=0.0))
        lay = eqx.tree_at(lambda t: t.solver, layer, solver, is_leaf=lambda v: v is None)
        p2, st2 = eqx.partition(lay, eqx.is_array)
        mem_t = compiled_memory(
            lambda p: eqx.filter_value_and_grad(loss_implicit)(eqx.combine(p, st2), x), p2
        )
        sol_t = eqx.filter_jit(lambda l, x: l.solve(x))(lay, x)
        table.add(
            f"implicit, tolerance {tol:g}, GMRES forcing {forcing:g} (memory only)",
            int(sol_t.num_steps),
            float(sol_t.residual),
            float("nan"),
            float("nan"),
            float("nan"),
            mem_t["temp"] / 2**20,
        )
    return table


if __name__ == "__main__":
    sys.path.insert(0, ".")
    main(run)
