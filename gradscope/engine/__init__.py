"""The Jacobian engine: step Jacobians → log-space products → spectra, paths, attribution."""

from gradscope.engine.attribution import Attribution, attribution
from gradscope.engine.bounds import bound
from gradscope.engine.jacobians import (
    StepJacobians,
    TrajectorySteps,
    materialise_fits,
    step_jacobians,
    trajectory_steps,
)
from gradscope.engine.paths import PathSplit, gate_statistics, path_split, path_split_of
from gradscope.engine.probe import ProbeProfile, probe_lag_profile
from gradscope.engine.products import LagProfile, Triangle, lag_profile, lag_profile_of, triangle, triangle_of
from gradscope.engine.sensitivity import ParameterSensitivity, parameter_sensitivity
from gradscope.engine.spectra import (
    Lyapunov,
    Spectra,
    lyapunov_spectrum,
    lyapunov_spectrum_of,
    singular_values,
    singular_values_of,
    step_singular_values,
    step_singular_values_of,
)

__all__ = [
    "Attribution",
    "attribution",
    "bound",
    "StepJacobians",
    "step_jacobians",
    "TrajectorySteps",
    "trajectory_steps",
    "materialise_fits",
    "PathSplit",
    "gate_statistics",
    "path_split",
    "path_split_of",
    "ProbeProfile",
    "probe_lag_profile",
    "LagProfile",
    "Triangle",
    "lag_profile",
    "lag_profile_of",
    "triangle",
    "triangle_of",
    "Lyapunov",
    "Spectra",
    "lyapunov_spectrum",
    "lyapunov_spectrum_of",
    "singular_values",
    "singular_values_of",
    "step_singular_values",
    "step_singular_values_of",
    "ParameterSensitivity",
    "parameter_sensitivity",
]
