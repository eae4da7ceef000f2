"""Sparse matrix-times-dense product `y = A x` for a CSR matrix with a symmetric sparsity pattern.

This module is the one place that touches `jax.experimental.sparse`. It borrows jaxlib's CSR kernel
(`bcsr_dot_general`, a C++ kernel on CPU and cuSPARSE on GPU) for the *evaluation* of `A x` and
nothing else: differentiation, transposition and batching are defined here, by our own rules, on a
primitive of our own (`csr_matmul`), because the experimental module's own autodiff rules are not
maintained. Where the kernel is not available (another backend, or a future JAX without the module)
the primitive lowers to a portable gather + sorted `segment_sum` implementation, which is also the
reference the tests compare against.

Rules (`A = A(data)` is linear in `data`, the product is bilinear):

- JVP: `d(A x) = A(d data) x + A(data) dx`.
- Transpose in `x`: `A^T ct`, evaluated as `A(data[tperm]) ct` where `tperm` maps each stored entry
  `(i, j)` to the stored entry `(j, i)` (the pattern is symmetric).
- Transpose in `data`: `ct_data[k] = sum_f ct[row_k, f] x[col_k, f]` (sampled dense-dense
  product), on the CPU accumulated in feature order from scalar gathers of feature columns, a few
  columns per pass over the entries.
- vmap over `x`: the batch is folded into the feature columns (one kernel call); vmap over `data`
  falls back to the portable implementation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir
from jaxtyping import Array, Inexact, Int

from .._sharding import on_mesh


try:  # jaxlib's CSR kernel, reached through the experimental sparse module.
    from jax.experimental.sparse.bcsr import bcsr_dot_general_p as _bcsr_dot_general_p
    from jax.experimental.sparse.util import SparseInfo as _SparseInfo
except ImportError:  # pragma: no cover - depends on the installed JAX
    _bcsr_dot_general_p = None
    _SparseInfo = None


def _portable_matmul(data, x, indices, rows, num_rows):
    """`y_i = sum_{k: row_k = i} data_k x_{col_k}` by gather + sorted segment sum."""
    contrib = data[:, None] * x[indices]
    return jax.ops.segment_sum(contrib, rows, num_rows, indices_are_sorted=True)


def _kernel_matmul(data, x, indices, indptr, num_rows):
    info = _SparseInfo(shape=(num_rows, x.shape[0]), indices_sorted=True)
    return _bcsr_dot_general_p.bind(
        data,
        indices,
        indptr,
        x,
        dimension_numbers=(((1,), (0,)), ((), ())),
        preferred_element_type=x.dtype,
        lhs_spinfo=info,
    )


csr_matmul_p = Primitive("jaxstat_csr_matmul")


def _abstract_eval(data, x, indices, indptr, rows, tperm):
    return jax.core.ShapedArray(x.shape, x.dtype)


csr_matmul_p.def_abstract_eval(_abstract_eval)


def _impl_portable(data, x, indices, indptr, rows, tperm):
    return _portable_matmul(data, x, indices, rows, x.shape[0])


def _impl_kernel(data, x, indices, indptr, rows, tperm):
    return _kernel_matmul(data, x, indices, indptr, x.shape[0])


# Outside jit, compile the primitive on its own (so eager calls use the same lowering).
csr_matmul_p.def_impl(jax.jit(csr_matmul_p.bind))
mlir.register_lowering(csr_matmul_p, mlir.lower_fun(_impl_portable, multiple_results=False))
if _bcsr_dot_general_p is not None:
    for _platform in ("cpu", "cuda", "rocm"):
        mlir.register_lowering(
            csr_matmul_p,
            mlir.lower_fun(_impl_kernel, multiple_results=False),
            platform=_platform,
        )


def _jvp(primals, tangents):
    data, x, indices, indptr, rows, tperm = primals
    ddata, dx = tangents[0], tangents[1]
    y = csr_matmul_p.bind(data, x, indices, indptr, rows, tperm)
    dy = None
    if type(ddata) is not ad.Zero:
        dy = csr_matmul_p.bind(ddata, x, indices, indptr, rows, tperm)
    if type(dx) is not ad.Zero:
        term = csr_matmul_p.bind(data, dx, indices, indptr, rows, tperm)
        dy = term if dy is None else dy + term
    if dy is None:
        dy = ad.Zero.from_primal_value(y)
    return y, dy


ad.primitive_jvps[csr_matmul_p] = _jvp


def _transpose(ct, data, x, indices, indptr, rows, tperm):
    if type(ct) is ad.Zero:
        return (None,) * 6
    if ad.is_undefined_primal(x):
        # `A^T ct`, same pattern, entries permuted.
        ct_x = csr_matmul_p.bind(data[tperm], ct, indices, indptr, rows, tperm)
        return None, ct_x, None, None, None, None
    if ad.is_undefined_primal(data):
        return _sampled_product(ct, x, rows, indices), None, None, None, None, None
    raise ValueError("csr_matmul is linear in one operand at a time")


ad.primitive_transposes[csr_matmul_p] = _transpose


# Feature columns per step of the CPU sampled dense-dense product: each step is one XLA loop fusion
# that reads the entries' row and column indices and the accumulator once for this many columns.
_CPU_COLUMN_BLOCK = 4


def _take(v, idx, indices_are_sorted=False):
    """`v[idx]` for a vector `v` and indices known to lie in `[0, len(v))`: one XLA gather, without
    the wrap-around of negative indices that `jnp` indexing adds (a pass over `idx`)."""
    dims = jax.lax.GatherDimensionNumbers(
        offset_dims=(), collapsed_slice_dims=(0,), start_index_map=(0,)
    )
    return jax.lax.gather(
        v,
        idx[:, None],
        dims,
        (1,),
        indices_are_sorted=indices_are_sorted,
        mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )


def _sampled_product(ct, x, rows, indices):
    """`out_k = sum_f ct[rows_k, f] x[indices_k, f]`, the sampled dense-dense product.

    On the CPU, from scalar gathers of feature columns, summed in feature order
    (`out <- out + ct[rows, f] * x[indices, f]`, `f = 0, 1, ...`): XLA's CPU gather is several
    times faster for scalars than for rows of `F` values, and the `(nnz, F)` gathered blocks
    `ct[rows]`, `x[indices]` are never materialised. A `lax.scan` over blocks of
    `_CPU_COLUMN_BLOCK` columns (the transposed features, contiguous per column; any remainder
    columns in one last step) fuses each block's gathers into one pass over the entries, so the
    index arrays and the accumulator are streamed once per block rather than once per column.
    Elsewhere (GPU), the row gathers and one reduction.
    """
    get = {"mode": "promise_in_bounds"}  # CSR indices lie in [0, n) by construction

    def by_columns(ct, x):
        def step(acc, columns):
            cs, vs = columns  # (b, n) each: `b` feature columns
            for c, v in zip(cs, vs):
                acc = acc + _take(c, rows, indices_are_sorted=True) * _take(v, indices)
            return acc, None

        n, f = ct.shape
        # At least two steps when `f >= 2`: XLA inlines a one-step loop, whose gathers then read
        # the row-major features with a stride (slower) and whose sum may round differently.
        block = max(1, min(f // 2, _CPU_COLUMN_BLOCK))
        full = f - f % block
        ct_t, x_t = ct.T, x.T
        acc = jnp.zeros(rows.shape, jnp.result_type(ct, x))
        acc = jax.lax.scan(
            step,
            acc,
            (ct_t[:full].reshape(-1, block, n), x_t[:full].reshape(-1, block, n)),
        )[0]
        if full < f:
            acc = step(acc, (ct_t[full:], x_t[full:]))[0]
        return acc

    def by_rows(ct, x):
        gathered = ct.at[rows].get(indices_are_sorted=True, **get) * x.at[indices].get(**get)
        return jnp.sum(gathered, axis=-1)

    return jax.lax.platform_dependent(ct, x, cpu=by_columns, default=by_rows)


def _batch(args, dims):
    data, x, indices, indptr, rows, tperm = args
    ddim, xdim, *sdims = dims
    if ddim is None and all(d is None for d in sdims):
        # Fold the batch into the feature columns: one kernel call.
        x = jnp.moveaxis(x, xdim, -1)  # (n, F, B)
        n, f, b = x.shape
        y = csr_matmul_p.bind(data, x.reshape(n, f * b), indices, indptr, rows, tperm)
        return y.reshape(n, f, b), 2
    # A batch of different matrices (same or different pattern): the portable path, vmapped.
    size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    moved = [
        jnp.broadcast_to(a, (size, *a.shape)) if d is None else jnp.moveaxis(a, d, 0)
        for a, d in zip(args, dims)
    ]
    out = jax.vmap(_impl_portable)(*moved)
    return out, 0


batching.primitive_batchers[csr_matmul_p] = _batch


def csr_matmul(
    data: Inexact[Array, " nnz"],
    x: Inexact[Array, "n ..."],
    indices: Int[Array, " nnz"],
    indptr: Int[Array, " n1"],
    rows: Int[Array, " nnz"],
    tperm: Int[Array, " nnz"],
) -> Inexact[Array, "n ..."]:
    """`y = A x` for the square CSR matrix `A` with entries `data` at `(rows, indices)`.

    The pattern must be symmetric and `tperm` the permutation with `A^T = A(data[tperm])`; rows are
    sorted (`rows` is the expansion of `indptr`). `x` has shape `(n, ...)`: trailing axes are
    features. Differentiable in `data` and `x` in forward and reverse mode, to any order, and
    vmappable.
    """
    dtype = jnp.result_type(data, x)
    data, x = data.astype(dtype), x.astype(dtype)
    shape = x.shape
    if on_mesh(data, x):
        # Under a mesh, XLA partitions the portable gather + segment sum (rows split, `x`
        # gathered); it cannot partition the kernel (a custom call), whose operands, a split
        # batch included, it would gather onto every device.
        y = _portable_matmul(data, x.reshape(shape[0], -1), indices, rows, shape[0])
    else:
        y = csr_matmul_p.bind(data, x.reshape(shape[0], -1), indices, indptr, rows, tperm)
    return y.reshape(shape)


# A permutation of the leading axis, `v[perm]`, whose transpose is the inverse permutation (a
# gather) rather than the scatter-add JAX would derive for a general gather: assembling `A(w)` from
# edge weights permutes the half-edge values into CSR order, and the weight gradient pays the
# transpose.
permute_p = Primitive("jaxstat_permute")
permute_p.def_abstract_eval(lambda v, perm, inverse: jax.core.ShapedArray(v.shape, v.dtype))
permute_p.def_impl(jax.jit(permute_p.bind))
mlir.register_lowering(
    permute_p,
    mlir.lower_fun(
        lambda v, perm, inverse: v.at[perm].get(unique_indices=True, mode="promise_in_bounds"),
        multiple_results=False,
    ),
)


def _permute_jvp(primals, tangents):
    v, perm, inverse = primals
    y = permute_p.bind(v, perm, inverse)
    if type(tangents[0]) is ad.Zero:
        return y, ad.Zero.from_primal_value(y)
    return y, permute_p.bind(tangents[0], perm, inverse)


def _permute_transpose(ct, v, perm, inverse):
    if type(ct) is ad.Zero:
        return None, None, None
    return permute_p.bind(ct, inverse, perm), None, None


ad.primitive_jvps[permute_p] = _permute_jvp
ad.primitive_transposes[permute_p] = _permute_transpose


def _permute_batch(args, dims):
    v, perm, inverse = args
    vdim, pdim, idim = dims
    if pdim is None and idim is None:
        return permute_p.bind(jnp.moveaxis(v, vdim, 1), perm, inverse), 1
    # A batch of permutations: plain gathers, vmapped.
    size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    v, perm = (
        jnp.broadcast_to(a, (size, *a.shape)) if d is None else jnp.moveaxis(a, d, 0)
        for a, d in ((v, vdim), (perm, pdim))
    )
    return jax.vmap(lambda v, p: v[p])(v, perm), 0


batching.primitive_batchers[permute_p] = _permute_batch


def permute(v: Array, perm: Int[Array, " m"], inverse: Int[Array, " m"]) -> Array:
    """`v[perm]` along the leading axis, for a permutation `perm` with inverse `inverse`;
    differentiable (its transpose is `ct[inverse]`) and vmappable."""
    return permute_p.bind(v, perm, inverse)


def csr_structure(rows: np.ndarray, cols: np.ndarray, num_rows: int):
    """Sort entries given in any order into CSR order.

    **Returns:** `(order, indices, indptr, rows_sorted, tperm)`: `order` permutes the entries into
    CSR order (rows, then columns); `tperm[k]` is the CSR position of the transpose of entry `k`.
    Raises `ValueError` if the pattern is not symmetric.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    order = np.lexsort((cols, rows))
    r, c = rows[order], cols[order]
    # Entry k = (r_k, c_k); its transpose (c_k, r_k). Match multisets of (row, col) pairs by ranks:
    # the t-th occurrence of (i, j) pairs with the t-th occurrence of (j, i).
    key = r * num_rows + c
    tkey = c * num_rows + r
    occ = _occurrence(key)
    torder = np.lexsort((occ, tkey))
    korder = np.lexsort((occ, key))
    if not (np.array_equal(key[korder], tkey[torder])):
        raise ValueError("the sparsity pattern is not symmetric")
    tperm = np.empty_like(order)
    tperm[torder] = korder
    indptr = np.zeros(num_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=num_rows), out=indptr[1:])
    i32 = np.int32
    return order, c.astype(i32), indptr.astype(i32), r.astype(i32), tperm.astype(i32)


def _occurrence(key: np.ndarray) -> np.ndarray:
    """For each entry, how many earlier entries share its key (keys in sorted blocks or not)."""
    order = np.argsort(key, kind="stable")
    k = key[order]
    start = np.r_[0, np.flatnonzero(np.diff(k)) + 1]
    counts = np.diff(np.r_[start, len(k)])
    occ_sorted = np.arange(len(k)) - np.repeat(start, counts)
    occ = np.empty_like(occ_sorted)
    occ[order] = occ_sorted
    return occ
