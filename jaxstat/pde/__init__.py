"""Viscous Hamilton-Jacobi and Burgers: finite volumes, exact solutions, shocks.

The viscous Hamilton-Jacobi equation `u_t + H(grad u) = nu Lap u` (`H(p) = 1/2 |p|^2` by default,
any convex `H`) and its gradient `p = grad u`, which obeys the viscous Burgers system
`p_t + div(flux(p)) = nu Lap p` (1-D: `p_t + (p^2/2)_x = nu p_xx`), on uniform 1-D and 2-D grids:
Godunov, Engquist-Osher and local Lax-Friedrichs fluxes; first-order, MUSCL and WENO5
reconstruction; SSP Runge-Kutta with CFL-adaptive steps, and implicit-explicit SSP Runge-Kutta
(IMEX) that solves for the viscous term (Fourier or tridiagonal) when it limits the step;
periodic, Dirichlet, Neumann and outflow boundaries. Burgers states are cell averages,
Hamilton-Jacobi states point values at the cell centres; `nu = 0` gives entropy solutions.

Exact references: Cole-Hopf `u = -2 nu log(G_{nu t} * exp(-u_0 / (2 nu)))` (`G_s` the heat kernel
of variance `2 s`), Hopf-Lax `u(x, t) = min_y u_0(y) + |x - y|^2 / (2 t)` for `nu = 0`, Riemann
problems and the inviscid shock time `t* = -1 / min p_0'`. The local entropy of a loss `f` at scope
`gamma` and inverse temperature `beta` is the HJ solution from `f` at `t = 1 / gamma` with
`nu = 1 / (2 beta)`, up to an additive constant (`local_entropy`).
"""

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
    FiniteVolumeTerm as FiniteVolumeTerm,
    FixedStep as FixedStep,
    IMEXSSP2 as IMEXSSP2,
    IMEXSSP3 as IMEXSSP3,
    SSPRK1 as SSPRK1,
    SSPRK2 as SSPRK2,
    SSPRK3 as SSPRK3,
)
