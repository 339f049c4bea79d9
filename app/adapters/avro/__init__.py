"""Avro contracts of `avro_schemas/`: registry, single-object codec, upcasters and domain mapping."""

from app.adapters.avro.codec import Codec, decode, default_codec, encode
from app.adapters.avro.errors import DecodeError, EncodeError
from app.adapters.avro.mapping import (
    LedgerEntry,
    Source,
    decode_event,
    decode_ledger_entry,
    decode_rejection,
    decode_snapshot,
    encode_event,
    encode_ledger_entry,
    encode_rejection,
    encode_snapshot,
)
from app.adapters.avro.registry import SchemaRegistry, default_registry
from app.adapters.avro.upcasters import decode_stored

__all__ = [
    "Codec",
    "DecodeError",
    "EncodeError",
    "LedgerEntry",
    "SchemaRegistry",
    "Source",
    "decode",
    "decode_event",
    "decode_ledger_entry",
    "decode_rejection",
    "decode_snapshot",
    "decode_stored",
    "default_codec",
    "default_registry",
    "encode",
    "encode_event",
    "encode_ledger_entry",
    "encode_rejection",
    "encode_snapshot",
]
