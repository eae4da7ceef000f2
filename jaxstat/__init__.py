"""jaxstat: a JAX toolkit for the geometry and dynamics of neural networks.

Subpackages (import them directly, e.g. `import jaxstat.graphs as jg`):

- `jaxstat.graphs`: weighted graphs with connections, Laplacians as matrix-free lineax operators.
- `jaxstat.stationary`: implicit layers whose output is the stationary state of a dissipative
  Schrödinger-type dynamics on a graph.
- `jaxstat.pde`: finite-volume viscous Hamilton-Jacobi and Burgers solvers, exact solutions, shocks.
- `jaxstat.morse`: critical points and Morse classification of network input-output maps.
- `jaxstat.graphons`: homomorphism densities and graphon gradient flows.
"""

__version__ = "0.1.0"
