"""Exception types pgm raises where a built-in one would print badly."""


class MissingInputError(KeyError):
    """A variable or parameter a formula needs was not given. Prints its message without quotes."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class TooManyConfigurationsError(ValueError):
    """A sum over every value of a discrete variable asked for more configurations than its distribution enumerates
    (``Family.max_enumerated``). A ``ValueError``, as it was before it had a name of its own.

    Attributes:
        count: what was asked, without advice, e.g. ``"p(y): enumerating its 17 elements of 2 values each is 131072
            configurations (more than 65536)"``; a caller that knows a better remedy gives its own advice after it.
    """

    def __init__(self, count, advice):
        super().__init__(f"{count}; {advice}")
        self.count = count


class EventShapeError(ValueError):
    """A value scored does not have the event shape of the distribution that scores it (a ``ValueError``, as it
    was before it had a name of its own)."""
