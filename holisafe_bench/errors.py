"""Errors that the CLI turns into one clear line and a non-zero exit."""


class HolisafeError(Exception):
    """A user-facing failure: bad input, missing access, a model that cannot load."""
