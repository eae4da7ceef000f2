"""Result codes and the result types of the critical-point search."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int


class RESULTS(eqx.Enumeration):
    """Result codes of `find_critical_points`."""

    successful = ""
    max_points_exceeded = (
        "More distinct critical points were found than there are `max_points` slots; the rest "
        "were dropped. A continuum of degenerate critical points (a bottleneck network) gives a "
        "different point for every start: increase `max_points` or pass `throw=False`."
    )
    nonfinite_start = "A start point is not finite."
    nonfinite_map = (
        "The map or its gradient is not finite at a start point (NaN or infinite weights, or a "
        "map that overflows in the box): no critical point can be trusted. Check the weights."
    )
    empty_box = "The box is empty: need `lower < upper` (finite) in every coordinate."
    non_isolated = (
        "The critical points found are degenerate and lie along the null directions of their "
        "Hessians: the critical set is not isolated but a continuum (curves or surfaces of "
        "critical points, as for a network with a bottleneck or a rank-deficient weight; "
        "`classify` says which). The slots hold samples of it and counts of points mean nothing: "
        "pass `throw=False` to read them."
    )
    incomplete = (
        "Completeness check failed: the sum of (-1)^index over the critical points found differs "
        "from the winding number of grad f along the box boundary (Poincare-Hopf), so at least "
        "one critical point in the box was missed. Use more starts (`find_all_critical_points` "
        "adds them until the check holds)."
    )
    check_undecided = (
        "Completeness check undecided: a critical point lies on or near the box boundary (the "
        "winding number of grad f there is not resolved), or a degenerate critical point was "
        "found (its index is not (-1)^k). Move or enlarge the box."
    )
    rare_basin = (
        "Completeness check failed: a critical point was reached by a single start, so basins "
        "of that size may still be unseen. Use more starts (`find_all_critical_points` adds "
        "them until every point is reached at least twice)."
    )
    screen_overflow = (
        "More starts passed the start screen than it has slots (`max_kept`); the searches from "
        "the rest were skipped, so critical points may be missing. Increase the screen's "
        "`max_kept`, raise its `neighbours`, or pass `screen=AllStarts()`."
    )


class Certificate(eqx.Module):
    """What is known about a (candidate) critical point `x` of `f`.

    - `gradient_norm`: the residual `|grad f(x)|_2`.
    - `eigenvalues`: the eigenvalues of `hess f(x)`, ascending.
    - `min_abs_eigenvalue`: `min_i |lambda_i|`, the distance of the Hessian to singularity.
    - `newton_step`: `|H^+ grad f(x)|_inf`, the minimum-norm Newton correction (`H^+` the
        pseudo-inverse of `hess f`): about the distance from `x` to the critical point (or critical
        manifold) that Newton's method converges to. A converged point has a step far below the
        search's `distinct_tol`; a near miss (small gradient, no critical point nearby) does not.
    - `tolerance`: `degeneracy_rtol * max_i |lambda_i|`, the threshold below which an eigenvalue
        counts as zero.
    - `degenerate`: `min |lambda_i| <= tolerance` (the Hessian is numerically singular).
    - `nullity`: the number of eigenvalues with `|lambda_i| <= tolerance`.
    - `index`: the Morse index, the number of eigenvalues `< -tolerance` (for a degenerate point,
        the number of clearly negative ones).
    """

    gradient_norm: Float[Array, "*batch"]
    eigenvalues: Float[Array, "*batch n"]
    min_abs_eigenvalue: Float[Array, "*batch"]
    newton_step: Float[Array, "*batch"]
    tolerance: Float[Array, "*batch"]
    degenerate: Bool[Array, "*batch"]
    nullity: Int[Array, "*batch"]
    index: Int[Array, "*batch"]


class CriticalPoints(eqx.Module):
    """The distinct critical points found by `find_critical_points`, in fixed-size slots.

    Slot `i` holds a point when `mask[i]` is true (`count` of them, sorted by value `f`); the other
    slots hold NaN points. Fields:

    - `points` `(P, n)`, `values` `(P,)`: the critical points and `f` there.
    - `certificate`: a `Certificate` per slot (residual, Hessian eigenvalues, Morse index,
        degeneracy test, nullity).
    - `hits` `(P,)`: the basin counts: how many starts converged to each point (a measure of
        its basin; a point reached once hints at unseen points of similar basins). With a start
        screen a start counts for the point its representative converged to.
    - `mask` `(P,)`, `count`: which slots are used, how many.
    - `num_starts`, `num_converged`: the (active) starts, and the starts that converged to an
        accepted point (with a start screen: whose representative did).
    - `num_searched`: the starts Newton's method ran from (`num_starts` without a screen; the
        starts the screen kept with one, see `NeighbourMinima`).
    - `num_fallback`: accepted starts that needed the least-squares fallback (Newton failed, e.g.
        on a singular Hessian).
    - `residual_tol`, `distinct_tol`, `degeneracy_rtol`: the tolerances used.
    - `winding_number`: in 2-D with a box, the winding number of `grad f` along the box boundary
        (an integer up to rounding when resolved; NaN otherwise).
    - `check`: the completeness check, a `RESULTS` code never raised: `successful`, `incomplete`
        (2-D: `sum (-1)^index != winding_number`, a point was missed), `check_undecided` (2-D: a
        point on or near the boundary, or a degenerate point), `rare_basin` (a point reached by
        one start only).
    - `result`: a `RESULTS` code (errors of the search; raised when `throw=True`).
    """

    points: Float[Array, "*batch p n"]
    values: Float[Array, "*batch p"]
    certificate: Certificate
    hits: Int[Array, "*batch p"]
    mask: Bool[Array, "*batch p"]
    count: Int[Array, "*batch"]
    num_starts: Int[Array, "*batch"]
    num_searched: Int[Array, "*batch"]
    num_converged: Int[Array, "*batch"]
    num_fallback: Int[Array, "*batch"]
    residual_tol: Float[Array, "*batch"]
    distinct_tol: Float[Array, "*batch"]
    degeneracy_rtol: Float[Array, "*batch"]
    winding_number: Float[Array, "*batch"]
    check: RESULTS
    result: RESULTS

    @property
    def index(self) -> Int[Array, "*batch p"]:
        """Morse index per slot (`-1` in unused slots)."""
        return jnp.where(self.mask, self.certificate.index, -1)

    @property
    def degenerate(self) -> Bool[Array, "*batch p"]:
        """Degeneracy flag per slot (`False` in unused slots)."""
        return self.mask & self.certificate.degenerate

    @property
    def complete(self) -> Bool[Array, "*batch"]:
        """Whether the completeness check holds (`check == RESULTS.successful`)."""
        return self.check == RESULTS.successful

    @property
    @eqx.filter_jit
    def index_sum(self) -> Int[Array, "*batch"]:
        """`sum (-1)^index` over all points found (degenerate ones counted by their clear index)."""
        signs = jnp.where(self.certificate.index % 2 == 0, 1, -1)
        return jnp.sum(jnp.where(self.mask, signs, 0), axis=-1)

    @eqx.filter_jit
    def index_counts(self) -> Int[Array, "*batch n1"]:
        """`c_k`, the number of non-degenerate critical points of Morse index `k = 0 .. n`.

        (These summaries are compiled, one program each: called eagerly, their every operation
        would compile a program of its own.)"""
        n = self.points.shape[-1]
        ok = self.mask & ~self.certificate.degenerate
        onehot = (self.certificate.index[..., None] == jnp.arange(n + 1)) & ok[..., None]
        return jnp.sum(onehot, axis=-2)

    @eqx.filter_jit
    def euler_characteristic(self) -> Int[Array, "*batch"]:
        """`sum_k (-1)^k c_k` over the non-degenerate points (Poincare-Hopf: for a Morse function
        whose gradient points outward on the boundary of a compact domain `D`, this is `chi(D)`)."""
        counts = self.index_counts()
        signs = (-1) ** jnp.arange(counts.shape[-1])
        return jnp.sum(counts * signs, axis=-1)

    def as_numpy(self) -> dict[str, np.ndarray]:
        """The used slots as numpy arrays (host-side; for one search, not a batch)."""
        if self.mask.ndim != 1:
            raise ValueError("as_numpy() is for a single search; index the batch first")
        m = np.asarray(self.mask)
        c = self.certificate
        return {
            "points": np.asarray(self.points)[m],
            "values": np.asarray(self.values)[m],
            "gradient_norm": np.asarray(c.gradient_norm)[m],
            "eigenvalues": np.asarray(c.eigenvalues)[m],
            "min_abs_eigenvalue": np.asarray(c.min_abs_eigenvalue)[m],
            "newton_step": np.asarray(c.newton_step)[m],
            "index": np.asarray(c.index)[m],
            "nullity": np.asarray(c.nullity)[m],
            "degenerate": np.asarray(c.degenerate)[m],
            "hits": np.asarray(self.hits)[m],
        }
