"""The pure core: statements, the interpreter, handlers and the rules they follow.

`COMPILED` says whether the statement tree, its validation and the interpreter run as compiled
code (built with mypyc when signoff is installed from a wheel or `pip install .` with a C
compiler at hand) or as pure Python (editable installs, or no compiler); both behave the same.
"""

from signoff.engine.core.tree import COMPILED

__all__ = ["COMPILED"]
