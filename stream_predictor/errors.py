"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user: a spec, a file, a config key, a weights file."""


class ConfigError(UserError):
    """An unknown config key or a value of the wrong type."""


class SourceError(UserError):
    """A source that cannot be opened, or a spec that names none."""


class ReadError(Exception):
    """A transient read failure of a live source (camera, stream); the capture thread reconnects."""


class DiskFullError(UserError):
    """The disk (or a quota) filled while writing; what was finished before is intact."""
