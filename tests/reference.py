"""The float64 reference, re-exported for tests: ``from tests.reference import ...``."""
from fmha.reference import *  # noqa: F401,F403
from fmha.reference import __all__  # noqa: F401
