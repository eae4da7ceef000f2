"""Re-export of the shared `jit` helper for existing imports (`jaxstat.quotient`): the one copy
lives in `jaxstat._jit`."""

from .._jit import jit as jit
