"""One typed codec for the records contracts store and views return (style habit 13): a
dataclass whose fields are bytes, int, str or bool is stored as the list of its field
values in declaration order. The contract writes and reads it through this codec, and so
do the SDK (client/contracts.py, from a view's JSON) and the light client
(diagnosis/directory.py, from proven state): the layout is declared once, by the fields.
"""

from __future__ import annotations

import typing
from dataclasses import fields
from typing import Any, ClassVar, Self

from chain import Value

FIELD_TYPES = (bytes, int, str, bool)


class RecordError(ValueError):
    """A stored value that is not the declared record (wrong shape or a field's type)."""


class StoredRecord:
    """Base of a record dataclass; subclasses are `@dataclass`es with FIELD_TYPES fields."""

    _types: ClassVar[tuple[type, ...] | None] = None

    @classmethod
    def field_types(cls) -> tuple[type, ...]:
        """The declared type of each field, in order (type aliases resolved: Address is bytes)."""
        if cls.__dict__.get("_types") is None:
            hints = typing.get_type_hints(cls)
            # fields(cls): every subclass is a dataclass; the base cannot be one (some are frozen, some not)
            types = tuple(hints[f.name] for f in fields(cls))  # type: ignore[arg-type]  # see above
            assert all(t in FIELD_TYPES for t in types), f"{cls.__name__}: fields must be {FIELD_TYPES}"
            cls._types = types
        assert cls._types is not None
        return cls._types

    def to_value(self) -> Value:
        return [getattr(self, f.name) for f in fields(self)]  # type: ignore[arg-type]  # a dataclass: see field_types

    @classmethod
    def from_value(cls, value: Value) -> Self:
        types = cls.field_types()
        if not isinstance(value, list) or len(value) != len(types):
            raise RecordError(f"{cls.__name__}: expected a list of {len(types)} values, got {value!r:.200}")
        for item, kind, field in zip(value, types, fields(cls), strict=True):  # type: ignore[arg-type]  # see field_types
            if type(item) is not kind:  # exact: a bool is not an int here
                raise RecordError(f"{cls.__name__}.{field.name}: expected {kind.__name__}, got {item!r:.80}")
        return cls(*value)

    @classmethod
    def from_json(cls, raw: Any) -> Self:
        """From a view's JSON (rpc/encoding.py value_to_json: bytes as 0x-hex strings)."""
        if not isinstance(raw, list) or len(raw) != len(cls.field_types()):
            raise RecordError(f"{cls.__name__}: expected a list of {len(cls.field_types())} values, got {raw!r:.200}")
        return cls.from_value([_hex(item) if kind is bytes else item
                               for item, kind in zip(raw, cls.field_types(), strict=True)])


def _hex(item: Any) -> Any:
    if not isinstance(item, str) or not item.startswith("0x"):
        return item  # from_value names the field
    try:
        return bytes.fromhex(item[2:])
    except ValueError as exc:
        raise RecordError(f"not hex: {item!r:.80}") from exc
