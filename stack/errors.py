"""The one error the stack raises when it cannot go on."""


class DemoError(RuntimeError):
    """The demo cannot go on; the message says what happened and where to look."""
