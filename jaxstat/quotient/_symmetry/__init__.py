"""Parameter symmetry groups: one module per family, the abstract base and products in `_base`."""
