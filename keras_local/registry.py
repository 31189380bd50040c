"""A small name -> factory registry with helpful errors."""


class Registry:
    """Maps names to factories; unknown names raise a `ValueError` listing what exists.

    Example:

    ```python
    heads = Registry("head")

    @heads.register("linear")
    def linear(num_classes):
        ...

    heads.get("linear")      # the factory
    heads.names()            # ["linear"]
    ```
    """

    def __init__(self, kind):
        self.kind = kind
        self._entries = {}

    def register(self, name):
        def decorator(factory):
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered.")
            self._entries[name] = factory
            return factory

        return decorator

    def get(self, name):
        if name not in self._entries:
            raise ValueError(f"Unknown {self.kind} {name!r}. Allowed: {', '.join(self.names())}.")
        return self._entries[name]

    def values(self):
        return [self._entries[name] for name in self.names()]

    def names(self):
        return sorted(self._entries)
