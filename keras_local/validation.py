"""Up-front checks of numeric arguments: one helper, one wording of the error.

Example:

```python
from keras_local.validation import check_number
check_number("alpha", 0.5, 0, 1)              # 0.5
check_number("ticks", 3, 1, integer=True)     # 3
check_number("max_reuse", None, 1, integer=True, optional=True)   # None
```
"""


def check_number(name, value, minimum=None, maximum=None, integer=False, optional=False, note=""):
    """Returns `value` as int (`integer`) or float if it lies in [minimum, maximum]
    (None: no bound), or None if it is None and `optional`; otherwise raises a
    `ValueError` that quotes it and says what is allowed (`note` adds why)."""
    if value is None and optional:
        return None
    valid_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if (
        isinstance(value, bool)
        or not valid_type
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        bounds = [f">= {minimum}"] * (minimum is not None) + [f"<= {maximum}"] * (maximum is not None)
        allowed = " ".join([("an integer" if integer else "a number"), " and ".join(bounds)]).strip()
        if integer and minimum == 1 and maximum is None:
            allowed = "a positive integer"
        raise ValueError(f"{name} must be {allowed}{' or None' if optional else ''}{note}, got {value!r}.")
    return int(value) if integer else float(value)
