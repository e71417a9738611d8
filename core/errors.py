"""The one error type users see for bad input: it names the field and the reason."""


class SpecError(ValueError):
    """A workload, cluster or setting that cannot be used.

    ``field`` is a path into the input (``tasks[3].work``, ``links[a,b].bandwidth``),
    ``reason`` says what is wrong in words a user can act on.
    """

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")
