"""The Jacobian engine: step Jacobians → log-space products → spectra, paths, attribution."""

from gradscope.engine.attribution import Attribution, attribution
from gradscope.engine.bounds import bound
from gradscope.engine.jacobians import StepJacobians, step_jacobians
from gradscope.engine.paths import PathSplit, gate_statistics, path_split
from gradscope.engine.probe import ProbeProfile, probe_lag_profile
from gradscope.engine.products import LagProfile, Triangle, lag_profile, triangle
from gradscope.engine.sensitivity import ParameterSensitivity, parameter_sensitivity
from gradscope.engine.spectra import Lyapunov, Spectra, lyapunov_spectrum, singular_values, step_singular_values

__all__ = [
    "Attribution",
    "attribution",
    "bound",
    "StepJacobians",
    "step_jacobians",
    "PathSplit",
    "gate_statistics",
    "path_split",
    "ProbeProfile",
    "probe_lag_profile",
    "LagProfile",
    "Triangle",
    "lag_profile",
    "triangle",
    "Lyapunov",
    "Spectra",
    "lyapunov_spectrum",
    "singular_values",
    "step_singular_values",
    "ParameterSensitivity",
    "parameter_sensitivity",
]
