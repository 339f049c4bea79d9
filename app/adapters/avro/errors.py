"""The codec's errors. Each carries a machine-readable `code` for dead-letter headers and metrics."""


class DecodeError(Exception):
    """Bytes that are not a message of a known schema.

    code: bad_marker | unknown_fingerprint | truncated | schema_mismatch | out_of_schema
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class EncodeError(ValueError):
    """A value that the schema cannot hold. code: unknown_schema | out_of_schema"""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
