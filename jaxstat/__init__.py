"""jaxstat: a JAX toolkit for the geometry and dynamics of neural networks.

Subpackages (import them directly, e.g. `import jaxstat.graphs as jg`, or reach them as
attributes after `import jaxstat`: each is imported on first use):

- `jaxstat.graphs`: weighted graphs with connections, Laplacians as matrix-free lineax operators.
- `jaxstat.stationary`: implicit layers whose output is the stationary state of a dissipative
  Schrödinger-type dynamics on a graph.
- `jaxstat.supragraph`: stacks of stationary layers as one global system on the supra-graph: exact
  global solve, adjoint gradients, penalized relaxation `l(Psi) + mu/2 |F(Psi)|^2`.
- `jaxstat.strata`: natural gradient and mirror descent on edge weights under Hessian metrics
  (optax transformations) that let edges die and be born.
- `jaxstat.equivalence`: exact conversions between resolvent, graph-stationary, supra-graph and
  sheaf networks; complexity figures and generalisation bounds from sparse geometry.
- `jaxstat.pde`: finite-volume viscous Hamilton-Jacobi and Burgers solvers, exact solutions, shocks.
- `jaxstat.morse`: critical points and Morse classification of network input-output maps.
- `jaxstat.graphons`: homomorphism densities and graphon gradient flows.
- `jaxstat.quotient`: parameter symmetries of networks, quotient observables, local entropy and
  Entropy-SGD.
"""

import importlib
import importlib.metadata

from ._krylov import GMRES as GMRES


try:
    __version__ = importlib.metadata.version("jaxstat")
except importlib.metadata.PackageNotFoundError:  # a source tree that was not installed
    __version__ = "unknown"


_SUBPACKAGES = frozenset(
    "graphs stationary supragraph strata equivalence pde morse graphons quotient".split()
)


def __getattr__(name: str):
    """`jaxstat.graphs` etc. after a bare `import jaxstat`: import the subpackage on first use, so
    `import jaxstat` stays cheap."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBPACKAGES)
