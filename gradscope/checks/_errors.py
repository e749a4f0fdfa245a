"""Exit codes and errors of a check (conventions of ``gradscope check``).

Exit codes: 0 pass, 1 regression, 2 usage or input error, 3 non-finite value, 4 baseline missing.
"""

from __future__ import annotations

from gradscope._errors import GradscopeError, NonFiniteError, UnknownNameError

EXIT_PASS, EXIT_REGRESSION, EXIT_USAGE, EXIT_NONFINITE, EXIT_BASELINE_MISSING = 0, 1, 2, 3, 4


class CheckInputError(GradscopeError, ValueError):
    """A report, baseline or config file cannot be used as given (exit code 2)."""

    exit_code = EXIT_USAGE


class UnknownFormatError(CheckInputError, UnknownNameError):
    """An output format that does not exist: an input error of a check and an unknown name (exit code 2)."""


class BaselineMissingError(GradscopeError, FileNotFoundError):
    """The baseline file does not exist (exit code 4)."""

    exit_code = EXIT_BASELINE_MISSING

    def __str__(self) -> str:  # OSError would format its args as a tuple
        return str(self.args[0]) if self.args else ""


class ReportNonFiniteError(NonFiniteError):
    """A report holds NaN or infinity where a finite number is required (exit code 3)."""

    exit_code = EXIT_NONFINITE
