"""pytest-emergent: test language models for emergent misalignment from pytest.

Importing this package stays light: torch, transformers, peft, openai and inspect_ai are
imported only by the backends that need them.
"""

from pytest_emergent.errors import EmergentError
from pytest_emergent.judging.scorers import register_scorer, registered_scorers

__all__ = ["EmergentError", "__version__", "register_scorer", "registered_scorers"]
__version__ = "0.1.0"
