"""Start screens of the critical-point search: which starts Newton's method runs from.

Every critical point `x*` of `f` is a zero, hence a global minimum, of `|grad f|`. A screen looks
at `|grad f|` at every start (one gradient evaluation each: for a neural ODE one solve of the flow
with its first variational equation, several times cheaper than a Newton step, which also needs
the second) and sends Newton only from the starts that stand for a valley of `|grad f|`; every
other start hands its search to one of them (its *representative*), so the basin counts `hits`
keep counting starts.
"""

import abc
import math

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int


class AbstractStartScreen(eqx.Module):
    """A rule choosing the starts of `find_critical_points` that Newton's method runs from.

    `parents` gives every start `i` a parent `p(i)` with `(|grad f(s_p)|, p) < (|grad f(s_i)|, i)`
    lexicographically, or `p(i) = i`; the starts with `p(i) = i` are searched, every other start
    takes the result of the root of its chain `i -> p(i) -> ...` (a discrete descent of
    `|grad f|`). `slots(k)` is the static number of searched starts the search makes room for.
    """

    @abc.abstractmethod
    def slots(self, num_starts: int) -> int:
        """The most starts Newton runs from (static); more is `RESULTS.screen_overflow`."""

    @abc.abstractmethod
    def lanes(self, batch_size: int | None) -> int | None:
        """The number of vmapped Newton lanes (see `find_critical_points`' `batch_size`)."""

    @abc.abstractmethod
    def parents(
        self,
        starts: Float[Array, "k n"],
        norms: Float[Array, " k"],
        active: Bool[Array, " k"],
        lower: Float[Array, " n"] | None,
        upper: Float[Array, " n"] | None,
        batch_size: int | None,
    ) -> Int[Array, " k"]:
        """`p(i)` for every start (`i` itself for an inactive start)."""


class AllStarts(AbstractStartScreen):
    """No screen: Newton's method runs from every start (`p(i) = i`). The default for maps whose
    gradient costs about as much as a Newton step (networks: `ScalarMLP`, `eqx.nn.MLP`, plain
    functions)."""

    def slots(self, num_starts):
        return num_starts

    def lanes(self, batch_size):
        return batch_size

    def parents(self, starts, norms, active, lower, upper, batch_size):
        del norms, active, lower, upper, batch_size
        return jnp.arange(starts.shape[0])


def _unit_ball_volume(n: int) -> float:
    return math.pi ** (n / 2) / math.gamma(n / 2 + 1)


class NeighbourMinima(AbstractStartScreen):
    """Newton's method runs only from the starts where `|grad f|` is smallest among their
    neighbours: start `i` is searched iff `|grad f(s_i)| <= |grad f(s_j)|` for every active start
    `s_j` with `|s_j - s_i|_2 <= r` (ties to the lower index). Every other start's parent is the
    neighbour of smallest `|grad f|`; it takes the result of the root of its chain (a discrete
    steepest descent of `|grad f|` on the neighbour graph), and counts in that point's `hits`.

    The radius `r` is that of a ball holding `neighbours` starts on average for starts uniform in
    the box (`vol(B_r) = neighbours * vol(box) / k`, `k` active starts; without a box, the
    bounding box of the starts). Near a non-degenerate critical point `|grad f(x)| ~ |H (x - x*)|`
    is a cone whose minimum over the starts is kept; a start in sampling noise is also kept when
    the half ball towards lower `|grad f|` holds no start (probability `~exp(-neighbours / 2)` in
    2-D for uniform starts), which only costs a Newton solve. Positive local minima of `|grad f|`
    (near misses) are kept too; Newton fails there and the residual test rejects them.

    What it can miss: a critical point whose valley of `|grad f|` holds no start that is smallest
    within `r`, i.e. two critical points (or a critical point and a deeper valley) closer than
    about `r` to each other: the nearer start of the other one wins and Newton from it converges
    to one point of the pair. In 2-D with a box Poincare-Hopf flags a single lost point (the index
    sum changes by one); a lost pair of opposite indices is invisible to it, as without the
    screen. Use more starts (`r` shrinks like `k^(-1/n)`) or `AllStarts()` where critical points
    may be that close.

    Cost: one gradient evaluation per start (the search evaluates `|grad f|` at every start
    anyway, for its default residual tolerance) and `k^2` distances in blocks of `batch_size`
    rows; Newton then runs from the kept starts only, over `min(batch_size, max_lanes)` lanes.

    **Arguments:**

    - `neighbours`: the mean number of starts in a neighbourhood (default 16: a spurious kept
        start has probability `~exp(-8) ~ 3e-4` in 2-D).
    - `max_kept`: the most starts Newton runs from (static); more kept starts give
        `RESULTS.screen_overflow` (their searches are skipped).
    - `max_lanes`: the vmapped Newton lanes (fewer than for all starts: few starts are kept).
    """

    neighbours: float = eqx.field(static=True, default=16.0)
    max_kept: int = eqx.field(static=True, default=256)
    max_lanes: int = eqx.field(static=True, default=64)

    def __check_init__(self):
        if not self.neighbours > 0:
            raise ValueError(f"`neighbours` must be positive, got {self.neighbours}")
        if self.max_kept < 1 or self.max_lanes < 1:
            raise ValueError(
                f"`max_kept` and `max_lanes` must be positive, got {self.max_kept}, "
                f"{self.max_lanes}"
            )

    def slots(self, num_starts):
        return min(num_starts, self.max_kept)

    def lanes(self, batch_size):
        return self.max_lanes if batch_size is None else min(batch_size, self.max_lanes)

    def radius(self, starts, active, lower, upper) -> Array:
        """`r` with `vol(B_r) = neighbours * vol(box) / k`."""
        n = starts.shape[1]
        if lower is None:
            lower = jnp.min(jnp.where(active[:, None], starts, jnp.inf), axis=0)
            upper = jnp.max(jnp.where(active[:, None], starts, -jnp.inf), axis=0)
        volume = jnp.prod(upper - lower)
        count = jnp.maximum(jnp.sum(active), 1)
        return (self.neighbours * volume / (count * _unit_ball_volume(n))) ** (1 / n)

    def window(self, num_starts: int, n: int) -> int:
        """The static half-width `W` of the sorted window: `_WINDOW_MARGIN` times the mean number
        of uniform starts within `r` of a start along the longest side of a cube, an upper
        bound for any box, `k (neighbours / (k vol(B_1)))^(1/n)`."""
        k = num_starts
        mean = k * (self.neighbours / (k * _unit_ball_volume(n))) ** (1 / n)
        return max(1, min(k - 1, math.ceil(_WINDOW_MARGIN * mean)))

    def parents(self, starts, norms, active, lower, upper, batch_size):
        from ._critical import _batched  # one batching helper

        k, n = starts.shape
        r2 = self.radius(starts, active, lower, upper) ** 2
        # Inactive starts and non-finite gradients never become a parent.
        key = jnp.where(active & jnp.isfinite(norms), norms, jnp.inf)
        # Sorted along the longest side of the box, the starts within `r` of a start lie within
        # `W` places of it (but for rare clumps, where the neighbourhood is cut to the window:
        # fewer comparisons, more starts kept).
        if lower is None:
            lower = jnp.min(jnp.where(active[:, None], starts, jnp.inf), axis=0)
            upper = jnp.max(jnp.where(active[:, None], starts, -jnp.inf), axis=0)
        side = jnp.argmax(upper - lower)
        order = jnp.argsort(jnp.where(active, starts[:, side], jnp.inf))
        sorted_starts, sorted_key = starts[order], key[order]
        w = self.window(k, n)
        offsets = jnp.arange(-w, w + 1)

        def row(p):
            js = p + offsets
            inside = (js >= 0) & (js < k)
            js = jnp.clip(js, 0, k - 1)
            near = inside & (jnp.sum((sorted_starts[js] - sorted_starts[p]) ** 2, axis=1) <= r2)
            cand = jnp.where(near, sorted_key[js], jnp.inf)
            # The smallest `(|grad f|, index)`: ties go to the lower index (no cycles).
            tie = near & (cand == jnp.min(cand))
            best = jnp.min(jnp.where(tie, order[js], k))
            i = order[p]
            return jnp.where(jnp.isfinite(key[i]), best, i)

        parent_sorted = _batched(row, jnp.arange(k), batch_size)
        return jnp.zeros(k, int).at[order].set(parent_sorted)


# The sorted window's margin over the mean count (Poisson: the count within `r` along one side
# exceeds its mean by 50% with probability ~1e-3 at a mean of 40, far less at 200).
_WINDOW_MARGIN = 1.5


def roots(parent: Int[Array, " k"]) -> Int[Array, " k"]:
    """The root of every chain `i -> p(i) -> ...` (pointer jumping: `p <- p[p]`, `ceil(log2 k)`
    times; a chain of strictly decreasing `(|grad f|, index)` has at most `k` links)."""
    k = parent.shape[0]
    for _ in range(max(1, math.ceil(math.log2(k)))):
        parent = parent[parent]
    return parent
