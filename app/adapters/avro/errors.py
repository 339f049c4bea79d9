"""The codec's errors (DecodeError is the services' own, from their ports). Each carries a machine-readable `code` for dead-letter headers and metrics."""

from app.service.ports import DecodeError

__all__ = ["DecodeError", "EncodeError"]



class EncodeError(ValueError):
    """A value that the schema cannot hold. code: unknown_schema | out_of_schema"""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
