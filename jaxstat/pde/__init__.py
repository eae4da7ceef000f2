"""Viscous Hamilton-Jacobi and Burgers: finite volumes, exact solutions, shocks (SPEC section F)."""

from ._boundary import (
    AbstractBoundary as AbstractBoundary,
    Dirichlet as Dirichlet,
    Neumann as Neumann,
    Outflow as Outflow,
    Periodic as Periodic,
)
from ._equation import (
    AbstractEquation as AbstractEquation,
    Burgers as Burgers,
    HamiltonJacobi as HamiltonJacobi,
)
from ._exact import (
    cole_hopf as cole_hopf,
    hopf_lax as hopf_lax,
    local_entropy as local_entropy,
    rankine_hugoniot as rankine_hugoniot,
    riemann as riemann,
)
from ._flux import (
    AbstractConvexFlux as AbstractConvexFlux,
    AbstractNumericalFlux as AbstractNumericalFlux,
    Convex as Convex,
    EngquistOsher as EngquistOsher,
    Godunov as Godunov,
    LocalLaxFriedrichs as LocalLaxFriedrichs,
    Quadratic as Quadratic,
)
from ._grid import UniformGrid as UniformGrid
from ._reconstruction import (
    AbstractLimiter as AbstractLimiter,
    AbstractReconstruction as AbstractReconstruction,
    FirstOrder as FirstOrder,
    MinMod as MinMod,
    MonotonizedCentral as MonotonizedCentral,
    MUSCL as MUSCL,
    VanLeer as VanLeer,
    WENO5 as WENO5,
    WENO5Z as WENO5Z,
)
from ._shock import (
    detect_shocks as detect_shocks,
    shock_formation as shock_formation,
    shock_speed as shock_speed,
    ShockFormation as ShockFormation,
    Shocks as Shocks,
)
from ._solution import RESULTS as RESULTS, Solution as Solution
from ._solve import solve as solve
from ._stepping import (
    AbstractStepSize as AbstractStepSize,
    CFLStep as CFLStep,
    FixedStep as FixedStep,
    SSPRK1 as SSPRK1,
    SSPRK2 as SSPRK2,
    SSPRK3 as SSPRK3,
)
