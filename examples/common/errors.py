"""The one exception the example scripts raise for a user's mistake (see ``training.run``)."""
import functools


class UsageError(Exception):
    """A mistake on the command line (an option's value, missing data): ``training.run`` prints it as one line
    ``error: ...`` and exits with status 2."""


def user_errors(load):
    """Turn the ValueError a data loader raises for bad options or data, and the OSError (a missing, unreadable or
    damaged file: FileNotFoundError, PermissionError, gzip.BadGzipFile, ...) or EOFError (a truncated file) of
    reading its files, into a UsageError. The loaders' own messages already name the option and the fix; an
    OSError of the system's names the file and why it could not be read."""
    @functools.wraps(load)
    def wrapped(*args, **kwargs):
        try:
            return load(*args, **kwargs)
        except (ValueError, OSError, EOFError) as error:
            raise UsageError(_message(error)) from None
    return wrapped


def _message(error):
    if isinstance(error, OSError) and error.strerror and error.filename:  # e.g. [Errno 13] Permission denied: 'x'
        return f"cannot read {error.filename}: {error.strerror}; check the path given with --data-root."
    text = " ".join(str(error).split())
    return text or f"{type(error).__name__} while reading the data; check the files at --data-root."
