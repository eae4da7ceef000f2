"""Weighted graphs with connections; Laplacians and Hamiltonians as sparse `lineax` operators.

`(H psi)_i = sum_{j ~ i} w_ij (psi_i - U_ij psi_j) + V_i psi_i`, cost `O(E)` per product.
"""

from ._builders import (
    from_edges as from_edges,
    from_networkx as from_networkx,
    knn_graph as knn_graph,
    random_graph as random_graph,
    random_unitary_blocks as random_unitary_blocks,
)
from ._connection import (
    AbstractConnection as AbstractConnection,
    BlockConnection as BlockConnection,
    PhaseConnection as PhaseConnection,
)
from ._graph import Graph as Graph, SparseHamiltonian as SparseHamiltonian
from ._kron import kron_reduction as kron_reduction
from ._sparse import csr_matmul as csr_matmul
