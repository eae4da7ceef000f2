"""Entry points that work on meshes with explicit axes.

JAX gives the axes of `jax.make_mesh` explicit sharding types by default: every array's type then
says how it is split, and each operation must be able to infer its output's split from its inputs'.
Inside `jax.vmap` over a batch split along an explicit axis, several operations the library relies
on cannot (JAX 0.10):

- a `lax.while_loop` whose predicate depends on the batch while part of its carry does not (the
  time loop of `diffrax.diffeqsolve`, Newton's loop of `optimistix.root_find`, and the binary search
  of `jnp.searchsorted`): the batching rule types the unbatched carry on the empty mesh and fails
  with "Resource axis: d of P('d',) is not found in mesh: ()";
- a gather from an unbatched array at batched indices (`ts[index]`), which asks for an
  `out_sharding` that `vmap` cannot pass on;
- an inner `vmap` over two arrays of which only one is split ("Mapped away dimension of inputs
  passed to vmap should be sharded the same").

`auto_axes_inside` runs an entry point with the explicit axes switched to automatic inside (as
`jax.sharding.auto_axes` does): the computation is partitioned by XLA from the inputs' layout, the
types inside carry no split, and the outputs are given back with explicit types.
"""

import functools

import equinox as eqx
import jax
import jax.tree_util as jtu
from jax.sharding import AxisType, PartitionSpec


def _meshes(arrays):
    """The context mesh, then the meshes the types of `arrays` name."""
    yield jax.sharding.get_abstract_mesh()
    for a in arrays:
        yield getattr(jax.typeof(a).sharding, "mesh", None)


def on_mesh(*arrays) -> bool:
    """Whether the caller is traced under a mesh of more than one device: the context's
    (`jax.set_mesh`), or one that the type of one of `arrays` names."""
    return any(m is not None and not m.empty and m.size > 1 for m in _meshes(arrays))


def _explicit_mesh(arrays):
    """The mesh with explicit axes in the context or in the types of `arrays`, else `None`."""
    for mesh in _meshes(arrays):
        if mesh is not None and not mesh.empty and AxisType.Explicit in mesh.axis_types:
            return mesh
    return None


def _leading_splits(arrays):
    """`{length: axis}` for each input whose leading axis is split over an explicit mesh axis."""
    splits = {}
    for a in arrays:
        spec = jax.typeof(a).sharding.spec
        if a.ndim > 0 and len(spec) > 0 and spec[0] is not None:
            splits.setdefault(a.shape[0], spec[0])
    return splits


def auto_axes_inside(fn):
    """Decorate an entry point so that it runs on meshes with explicit axes.

    Without a mesh with explicit axes (no mesh, or `AxisType.Auto` axes) `fn` is called as it is.
    Otherwise `fn` runs inside `jax.sharding.auto_axes` over the explicit axes, and each array
    output is given back with an explicit type: split along its leading axis when an input's
    leading axis of the same length is split (the batch or the nodes stay where they are),
    replicated otherwise. Under `jax.vmap` over a split batch, `fn` sees the unbatched values
    (replicated), its outputs are replicated per batch element, and `vmap` puts the split batch
    axis back in front: the batch stays split, nothing is gathered onto one device.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        dynamic, static = eqx.partition((args, kwargs), eqx.is_array)
        arrays = jtu.tree_leaves(dynamic)
        mesh = _explicit_mesh(arrays)
        if mesh is None:
            return fn(*args, **kwargs)
        axes = tuple(n for n, t in zip(mesh.axis_names, mesh.axis_types) if t == AxisType.Explicit)
        splits = _leading_splits(arrays)

        inside = mesh.update_axis_types({axis: AxisType.Auto for axis in axes})
        with jax.sharding.use_abstract_mesh(inside):
            # Inside, the types carry no split (the axes are automatic): XLA partitions the
            # computation from the inputs' layout.
            dynamic = jtu.tree_map(lambda a: jax.sharding.reshard(a, PartitionSpec()), dynamic)
            args, kwargs = eqx.combine(dynamic, static)
            out_dynamic, out_static = eqx.partition(fn(*args, **kwargs), eqx.is_array)

        def give_back(a):
            axis = splits.get(a.shape[0]) if a.ndim > 0 else None
            return jax.sharding.reshard(a, PartitionSpec() if axis is None else PartitionSpec(axis))

        with jax.sharding.use_abstract_mesh(mesh):
            out_dynamic = jtu.tree_map(give_back, out_dynamic)
        return eqx.combine(out_dynamic, out_static)

    return wrapper
