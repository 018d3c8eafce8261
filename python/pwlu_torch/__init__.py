"""pwlu_torch: Piecewise Linear Units for PyTorch, and export of PWLU classifiers to the pwlu engine."""

from .check import CheckResult, check
from .convert import SiteReport, TraceFailure, convert, summarize, trace
from .export import FORMAT_VERSION, ExportError, export
from .pwlu import PWLU, NonUniformPWLU

__all__ = [
    "PWLU",
    "NonUniformPWLU",
    "convert",
    "trace",
    "summarize",
    "TraceFailure",
    "SiteReport",
    "export",
    "ExportError",
    "FORMAT_VERSION",
    "check",
    "CheckResult",
]
