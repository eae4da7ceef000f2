r"""Symmetries of multi-head attention (`eqx.nn.MultiheadAttention`).

Per head `h`, with the bias appended as a last column (augmented matrices), equinox's layout gives
`Q_h = [W_q,h | b_q,h]` (`d_k x (n_q + 1)`), `K_h = [W_k,h | b_k,h]`, `V_h = [W_v,h | b_v,h]`
(`d_v x (n_v + 1)`) and the head's block of the output projection `O_h` (`n_out x d_v`). The
attention scores `(W_q,h x + b_q,h)^T (W_k,h y + b_k,h)` depend on `Q_h^T K_h` only, and the head's
output on `O_h V_h` only (attention weights sum to one), so the group

    (Q_h, K_h) -> (A_h^T Q_h, A_h^{-1} K_h),  A_h in GL(d_k)    [W_Q -> W_Q A, W_K -> W_K A^{-T}]
    (V_h, O_h) -> (B_h V_h, O_h B_h^{-1}),     B_h in GL(d_v)    [W_V -> W_V B, W_O -> B^{-1} W_O]

together with permutations of the heads (a head moves with all four blocks) leaves the layer's
function unchanged. Invariants `Q_h^T K_h` and `O_h V_h` (heads sorted); charges of gradient flow
`Q_h Q_h^T - K_h K_h^T` and `V_h V_h^T - O_h^T O_h` (Noether for `gl(d)`); balanced representative
from the SVD `Q_h^T K_h = U S W^T`: `Q_h' = S^{1/2} U^T`, `K_h' = S^{1/2} W^T` (signs fixed by
making the largest entry of each column of `U` positive), which attains the orbit's minimal norm
`min (|Q_h|^2 + |K_h|^2) = 2 |Q_h^T K_h|_*` (nuclear norm), and likewise for `(V_h, O_h)`.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy.linalg as jsl
import numpy as np
from scipy.optimize import linear_sum_assignment

from ._base import AbstractSymmetry, compiled_act, compiled_canonicalize, sqnorm


def _augment(linear, heads):
    """`[W | b]` per head: `(heads, d, n_in + 1)`, or `(heads, d, n_in)` without bias."""
    w = linear.weight.reshape(heads, -1, linear.weight.shape[-1])
    if linear.bias is None:
        return w
    return jnp.concatenate([w, linear.bias.reshape(heads, -1, 1)], axis=-1)


def _split(linear, aug, heads):
    n_in = linear.weight.shape[-1]
    weight = aug[..., :n_in].reshape(linear.weight.shape)
    bias = None if linear.bias is None else aug[..., n_in].reshape(linear.bias.shape)
    return weight, bias


def _balance(left, right):
    r"""Balanced factors of `M = L^T R` per head: `L' = S^{1/2} U^T`, `R' = S^{1/2} W^T` from the
    SVD `M = U S W^T` computed through thin QRs `L^T = U_1 R_1`, `R^T = U_2 R_2` and the small SVD
    of `R_1 R_2^T`. Returns `(L', R', S)`."""
    u1, r1 = jnp.linalg.qr(jnp.swapaxes(left, -1, -2))
    u2, r2 = jnp.linalg.qr(jnp.swapaxes(right, -1, -2))
    p, s, wt = jnp.linalg.svd(r1 @ jnp.swapaxes(r2, -1, -2))
    u = u1 @ p
    w = u2 @ jnp.swapaxes(wt, -1, -2)
    lead = jnp.take_along_axis(u, jnp.argmax(jnp.abs(u), axis=-2)[..., None, :], axis=-2)
    sign = jnp.where(lead < 0, -1.0, 1.0).astype(u.dtype)
    root = jnp.sqrt(s)[..., :, None]
    return root * jnp.swapaxes(u * sign, -1, -2), root * jnp.swapaxes(w * sign, -1, -2), s


class AttentionSymmetry(AbstractSymmetry):
    r"""`(GL(d_k) x GL(d_v))^H` semidirect with `S_H` (head permutations) for the
    `eqx.nn.MultiheadAttention` at `where(params)`.

    A group element is `(A, B, perm)`: `A` of shape `(H, d_k, d_k)`, `B` of shape `(H, d_v, d_v)`,
    `perm` of shape `(H,)`; head `h` of the result is old head `perm[h]` transformed by `A_h`,
    `B_h`. The chart is `A = I + X`, `B = I + Y`.

    **Arguments:** `where`: a function returning the attention module from the parameters (the
    identity when the parameters are the module itself).
    """

    where: Callable = eqx.field(static=True, default=lambda p: p)

    # blocks ----------------------------------------------------------------------------------

    def _blocks(self, params):
        mha = self.where(params)
        h = mha.num_heads
        q = _augment(mha.query_proj, h)
        k = _augment(mha.key_proj, h)
        v = _augment(mha.value_proj, h)
        o = jnp.swapaxes(
            mha.output_proj.weight.reshape(-1, h, mha.vo_size), 0, 1
        )  # (H, n_out, d_v)
        return q, k, v, jnp.swapaxes(o, -1, -2)  # O_h^T: (H, d_v, n_out)

    def _replace(self, params, q, k, v, ot):
        mha = self.where(params)
        h = mha.num_heads
        wq, bq = _split(mha.query_proj, q, h)
        wk, bk = _split(mha.key_proj, k, h)
        wv, bv = _split(mha.value_proj, v, h)
        wo = jnp.transpose(ot, (2, 0, 1))  # (n_out, H, d_v)
        wo = wo.reshape(mha.output_proj.weight.shape)
        new = eqx.tree_at(
            lambda m: (
                m.query_proj.weight,
                m.key_proj.weight,
                m.value_proj.weight,
                m.output_proj.weight,
            ),
            mha,
            (wq, wk, wv, wo),
        )
        for bias, get in (
            (bq, lambda m: m.query_proj.bias),
            (bk, lambda m: m.key_proj.bias),
            (bv, lambda m: m.value_proj.bias),
        ):
            if bias is not None:
                new = eqx.tree_at(get, new, bias)
        return eqx.tree_at(self.where, params, new)

    def _heads(self, params):
        mha = self.where(params)
        return mha.num_heads, mha.qk_size, mha.vo_size

    # group -----------------------------------------------------------------------------------

    def act(self, params, g):
        a, b, perm = g
        q, k, v, ot = self._blocks(params)
        q = jnp.swapaxes(a, -1, -2) @ q[perm]
        k = jnp.linalg.solve(a, k[perm])
        v = b @ v[perm]
        ot = jnp.linalg.solve(jnp.swapaxes(b, -1, -2), ot[perm])
        return self._replace(params, q, k, v, ot)

    def identity(self, params):
        h, dk, dv = self._heads(params)
        dtype = self.where(params).query_proj.weight.dtype
        return (
            jnp.broadcast_to(jnp.eye(dk, dtype=dtype), (h, dk, dk)),
            jnp.broadcast_to(jnp.eye(dv, dtype=dtype), (h, dv, dv)),
            jnp.arange(h),
        )

    def random_element(self, key, params):
        h, dk, dv = self._heads(params)
        dtype = self.where(params).query_proj.weight.dtype
        ka, kb, kp = jr.split(key, 3)
        x = 0.5 * jr.normal(ka, (h, dk, dk), dtype) / jnp.sqrt(dk)
        y = 0.5 * jr.normal(kb, (h, dv, dv), dtype) / jnp.sqrt(dv)
        return jax.vmap(jsl.expm)(x), jax.vmap(jsl.expm)(y), jr.permutation(kp, h)

    def algebra_zero(self, params):
        h, dk, dv = self._heads(params)
        dtype = self.where(params).query_proj.weight.dtype
        return jnp.zeros((h, dk, dk), dtype), jnp.zeros((h, dv, dv), dtype)

    def chart(self, params, xi):
        x, y = xi
        h, dk, dv = self._heads(params)
        return jnp.eye(dk, dtype=x.dtype) + x, jnp.eye(dv, dtype=y.dtype) + y, jnp.arange(h)

    def charges(self, params):
        q, k, v, ot = self._blocks(params)

        def gram(m):
            return m @ jnp.swapaxes(m, -1, -2)

        return gram(q) - gram(k), gram(v) - gram(ot)

    # quotient ---------------------------------------------------------------------------------

    def _head_invariants(self, params):
        q, k, v, ot = self._blocks(params)
        return jnp.swapaxes(q, -1, -2) @ k, jnp.swapaxes(ot, -1, -2) @ v  # Q^T K, O V

    def invariants(self, params):
        qk, ov = self._head_invariants(params)
        order = jnp.argsort(jnp.sum(qk**2, axis=(-1, -2)) + jnp.sum(ov**2, axis=(-1, -2)))
        return qk[order], ov[order]

    def _balanced(self, params):
        q, k, v, ot = self._blocks(params)
        q, k, s_qk = _balance(q, k)
        v, ot, s_vo = _balance(v, ot)
        return q, k, v, ot, s_qk, s_vo

    def canonicalize(self, params):
        q, k, v, ot, s_qk, s_vo = self._balanced(params)
        order = jnp.argsort(jnp.sum(s_qk**2, axis=-1) + jnp.sum(s_vo**2, axis=-1))
        return self._replace(params, q[order], k[order], v[order], ot[order])

    def orbit_min_norm(self, params):
        q, k, v, ot = self._blocks(params)
        *_, s_qk, s_vo = self._balanced(params)
        moved = sqnorm((q, k, v, ot))
        return sqnorm(params) - moved + 2 * (jnp.sum(s_qk) + jnp.sum(s_vo))

    def align(self, reference, params):
        reference = compiled_canonicalize(self, reference)
        params = compiled_canonicalize(self, params)
        ra, rb = self._head_invariants(reference)
        pa, pb = self._head_invariants(params)
        cost = np.asarray(jnp.einsum("hij,gij->hg", ra, pa) + jnp.einsum("hij,gij->hg", rb, pb))
        _, perm = linear_sum_assignment(cost, maximize=True)
        g = self.identity(params)
        return reference, compiled_act(self, params, (g[0], g[1], jnp.asarray(perm)))
