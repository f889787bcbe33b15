"""Exception types pgm raises where a built-in one would print badly."""


class MissingInputError(KeyError):
    """A variable or parameter a formula needs was not given. Prints its message without quotes."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""
