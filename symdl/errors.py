"""Exception types with the CLI exit code each maps to."""
class SymdlError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""
    exit_code = 1
class UsageError(SymdlError):
    exit_code = 2
class DataError(UsageError):
    exit_code = 2
class NumericalError(SymdlError):
    exit_code = 3
class CheckpointError(SymdlError):
    exit_code = 4
