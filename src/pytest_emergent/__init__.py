"""pytest-emergent: test language models for emergent misalignment from pytest.

Importing this package stays light: torch, transformers, peft, openai and inspect_ai are
imported only by the backends that need them.
"""

from pytest_emergent.errors import EmergentError

__all__ = ["EmergentError", "__version__"]
__version__ = "0.1.0"
