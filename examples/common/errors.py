"""The one exception the example scripts raise for a user's mistake (see ``training.run``)."""
import functools


class UsageError(Exception):
    """A mistake on the command line (an option's value, missing data): ``training.run`` prints it as one line
    ``error: ...`` and exits with status 2."""


def user_errors(load):
    """Turn the ValueError / FileNotFoundError a data loader raises for bad options or missing files into a
    UsageError: the message already names the option and the fix."""
    @functools.wraps(load)
    def wrapped(*args, **kwargs):
        try:
            return load(*args, **kwargs)
        except (ValueError, FileNotFoundError) as error:
            raise UsageError(str(error)) from None
    return wrapped
