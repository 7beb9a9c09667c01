"""Exception types with the CLI exit code each maps to."""
__all__ = ["BackendError", "CheckpointError", "DataError", "NumericalError", "SymdlError",
           "Terminated", "UsageError"]
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
class BackendError(SymdlError):
    """A backend that is not installed or has no device (exit code 1)."""
    exit_code = 1
class Terminated(KeyboardInterrupt):
    """SIGTERM during training, after the "interrupted" checkpoint (exit code 143)."""
    exit_code = 143
