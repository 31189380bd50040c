"""Old import paths that keep working for a version, with a `DeprecationWarning`.

Example:

```python
# The last line of keras_local/heads.py, so `from keras_local.heads import DGLHead` still works:
module_getattr = moved_names("keras_local.heads", {"DGLHead": "keras_local.methods.dgl"})
module_getattr("DGLHead")   # DeprecationWarning: ... moved to keras_local.methods.dgl.DGLHead ...
```
"""

import importlib
import warnings


def moved_names(module, new_homes):
    """A module-level `__getattr__` for names that moved out of `module`:
    `new_homes` maps each old name to the module that holds it now. Reading
    an old name warns once per call site and returns the object itself (the
    same class, so `isinstance` and saved files are unaffected)."""

    def __getattr__(name):
        if name not in new_homes:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        home = new_homes[name]
        warnings.warn(
            f"{module}.{name} moved to {home}.{name}; import it from there ({module}.{name} will be "
            f"removed in keras_local 0.5).",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(home), name)

    return __getattr__
