"""Typed TOML documents described by frozen dataclasses: the one schema behind genesis.toml
and node.toml, used both to validate a file at load and to write the configuration
reference (README), so the two cannot drift.

A setting is a dataclass field: its name is the key, its type hint the expected TOML form,
its default the default (no default: required), the comment above it or beside it in the
source its documentation. Optional `field(metadata=...)` keys refine it:

    min, max   integer bounds (integers are >= 0 unless `min` says otherwise)
    choices    the allowed values
    doc        documentation, instead of the source comment
    table      the TOML table the field lives in, when not its owner's (e.g. [p2p] host)
    key        the key inside that table, when not the field name
    schema     the dataclass describing the field's TOML form (a dict or a list of tables)
    exclude    names of `schema` fields that are not settings (they come from elsewhere)
    toml       False: not read from the file at all

A dataclass-typed field is a table of its own, named after the field. The dataclass's
`__post_init__` is the validation hook for relations between its own fields; its
ValueError (or TypeError) is reported with the table's name.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import json
import re
import tokenize
import types
import typing
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

INT_MIN_DEFAULT = 0
REQUIRED = MISSING


class SchemaError(ValueError):
    """A value of a TOML document that its schema refuses; names where and what was expected."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


@dataclass(frozen=True)
class Setting:
    """One key of one table."""

    table: str  # "" for the document's top level
    key: str
    field: str  # the dataclass field it fills
    kind: Any  # type hint
    default: Any  # REQUIRED when the key must be given
    doc: str
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[Any, ...] = ()
    rows: type | None = None  # a list of tables (or a table) described by this dataclass
    rows_exclude: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"[{self.table}] {self.key}" if self.table else self.key

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: Any) -> Any:
        """The value converted to the field's Python type, or SchemaError."""
        return _convert(self, self.kind, value, self.where)

    def expected(self) -> str:
        text = type_name(self.kind, self.rows)
        if self.choices:
            text = "one of " + ", ".join(json.dumps(c) for c in self.choices)
        elif _is_int(self.kind):
            low = INT_MIN_DEFAULT if self.minimum is None else self.minimum
            text = f"integer >= {low}" if self.maximum is None else f"integer {low}..{self.maximum}"
        return text


@dataclass(frozen=True)
class Table:
    name: str  # "" for the top level
    owner: type | None  # the dataclass whose __post_init__ checks the table, if any
    settings: tuple[Setting, ...]
    exclude: tuple[str, ...] = ()

    def by_key(self) -> dict[str, Setting]:
        return {s.key: s for s in self.settings}


def settings_of(kind: type, table: str, exclude: tuple[str, ...] = ()) -> tuple[Setting, ...]:
    """Every field of a dataclass as a setting of `table`."""
    hints = typing.get_type_hints(kind)
    comments = field_comments(kind)
    found = []
    for f in dataclasses.fields(kind):
        if f.name in exclude or f.metadata.get("toml", True) is False:
            continue
        found.append(_setting(f, hints[f.name], table, comments.get(f.name, "")))
    return tuple(found)


def _setting(f: dataclasses.Field[Any], hint: Any, table: str, comment: str) -> Setting:
    meta = f.metadata
    if f.default is not MISSING:
        default = f.default
    elif f.default_factory is not MISSING:
        default = f.default_factory()
    else:
        default = REQUIRED
    return Setting(table=meta.get("table", table), key=meta.get("key", f.name), field=f.name, kind=hint,
                   default=default, doc=meta.get("doc", comment), minimum=meta.get("min"),
                   maximum=meta.get("max"), choices=tuple(meta.get("choices", ())), rows=meta.get("schema"),
                   rows_exclude=tuple(meta.get("exclude", ())))


def document(kind: type, root: str) -> list[Table]:
    """The tables of a document whose plain fields live in table `root` ("" = top level),
    whose dataclass-typed fields (and fields with a `table`) are tables of their own."""
    hints = typing.get_type_hints(kind)
    comments = field_comments(kind)
    plain: list[Setting] = []
    tables: dict[str, Table] = {}
    for f in dataclasses.fields(kind):
        if f.metadata.get("toml", True) is False:
            continue
        hint = hints[f.name]
        if _is_table_type(hint) and "schema" not in f.metadata:
            name = f.metadata.get("table", f.name)
            _merge(tables, Table(name, hint, settings_of(hint, name)))
        elif "schema" in f.metadata and not _is_list(hint):
            name = f.metadata.get("table", f.name)
            exclude = tuple(f.metadata.get("exclude", ()))
            _merge(tables, Table(name, f.metadata["schema"], settings_of(f.metadata["schema"], name, exclude),
                                 exclude))
        else:
            setting = _setting(f, hint, root, comments.get(f.name, ""))
            if setting.table == root:
                plain.append(setting)
            else:
                _merge(tables, Table(setting.table, None, (setting,)))
    return [Table(root, None, tuple(plain)), *tables.values()]


def _merge(tables: dict[str, Table], table: Table) -> None:
    """Fields of the owner that live in a sub-dataclass's table ([p2p] host beside P2PConfig)."""
    old = tables.get(table.name)
    if old is None:
        tables[table.name] = table
        return
    owner = old.owner or table.owner
    tables[table.name] = Table(table.name, owner, old.settings + table.settings, old.exclude + table.exclude)


def check_document(raw: dict[str, Any], tables: list[Table], source: str) -> dict[str, dict[str, Any]]:
    """Validate a parsed TOML document: table name -> {field name: converted value} for the
    keys present. Unknown tables and keys, missing required keys, wrong types and values out
    of range are refused with SchemaError naming the file, table and key."""
    by_name = {t.name: t for t in tables}
    top = by_name.get("", Table("", None, ()))
    top_keys = top.by_key()
    out: dict[str, dict[str, Any]] = {name: {} for name in by_name}
    out.setdefault("", {})
    for key, value in raw.items():
        if key in top_keys:
            setting = top_keys[key]
            out[""][setting.field] = _convert(setting, setting.kind, value, f"{source}: {key}")
        elif key in by_name and key != "":
            if not isinstance(value, dict):
                raise SchemaError(f"{source}: {key}", f"must be a table [{key}], got {_show(value)}")
            out[key] = _check_table(by_name[key], value, f"{source}: [{key}]")
        else:
            known = [f"[{name}]" for name in sorted(by_name.keys() - {""})] + sorted(top_keys)
            raise SchemaError(f"{source}: {_where(key, value)}", f"unknown; known: {', '.join(known)}")
    for table in tables:
        missing = [s.where for s in table.settings if s.required and s.field not in out[table.name]]
        if missing:
            raise SchemaError(source, f"missing {', '.join(missing)}")
    return out


def _where(key: str, value: Any) -> str:
    return f"table [{key}]" if isinstance(value, dict) else f"key {key}"


def _check_table(table: Table, values: dict[str, Any], prefix: str) -> dict[str, Any]:
    settings = table.by_key()
    out: dict[str, Any] = {}
    for key, value in values.items():
        setting = settings.get(key)
        if setting is None:
            if key in table.exclude:
                raise SchemaError(f"{prefix} {key}", "is not set here (it comes from elsewhere)")
            raise SchemaError(f"{prefix} {key}", f"unknown setting; known: {', '.join(sorted(settings))}")
        out[setting.field] = _convert(setting, setting.kind, value, f"{prefix} {key}")
    return out


def build(kind: type, values: dict[str, Any], where: str) -> Any:
    """kind(**values), its own __post_init__ checks reported as SchemaError at `where`."""
    try:
        return kind(**values)
    except (ValueError, TypeError) as exc:
        raise SchemaError(where, str(exc)) from exc


# conversion -------------------------------------------------------------------------------
def _convert(setting: Setting, kind: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(options) == 1:
            return _convert(setting, options[0], value, where)
    if setting.choices and value not in setting.choices:
        raise _refused(setting, value, where)
    if setting.rows is not None:
        return _convert_rows(setting, value, where)
    if kind is bool:
        if not isinstance(value, bool):
            raise _refused(setting, value, where)
        return value
    if _is_int(kind):
        if not isinstance(value, int) or isinstance(value, bool):
            raise _refused(setting, value, where)
        low = INT_MIN_DEFAULT if setting.minimum is None else setting.minimum
        if value < low or (setting.maximum is not None and value > setting.maximum):
            raise _refused(setting, value, where)
        return value
    if kind is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _refused(setting, value, where)
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise _refused(setting, value, where)
        return value
    if kind is Path:
        if not isinstance(value, str) or not value:
            raise _refused(setting, value, where)
        return Path(value)
    if kind is bytes:
        return _hex(value, where)
    if origin in (tuple, list) or kind is Any or origin is dict or kind is dict:
        if origin in (tuple, list) and not isinstance(value, list):
            raise _refused(setting, value, where)
        return tuple(value) if origin is tuple else value
    if _is_table_type(kind):
        return _row(kind, (), value, where)
    raise TypeError(f"{where}: no TOML form for {kind!r}")  # a schema bug, not a user mistake


def _convert_rows(setting: Setting, value: Any, where: str) -> Any:
    assert setting.rows is not None
    if not _is_list(setting.kind):
        return _row(setting.rows, setting.rows_exclude, value, where)
    if not isinstance(value, list):
        raise SchemaError(where, f"must be a list of tables ([[{where}]] entries), got {_show(value)}")
    return [_row(setting.rows, setting.rows_exclude, row, f"{where}[{i}]") for i, row in enumerate(value)]


def _row(kind: type, exclude: tuple[str, ...], value: Any, where: str) -> dict[str, Any]:
    """One table checked against a dataclass: {field: converted value}."""
    if not isinstance(value, dict):
        raise SchemaError(where, f"must be a table, got {_show(value)}")
    table = _row_table(kind, exclude)
    out = _check_table(table, value, where)
    missing = [s.key for s in table.settings if s.required and s.field not in out]
    if missing:
        raise SchemaError(where, f"missing {', '.join(missing)}")
    return out


@functools.cache
def _row_table(kind: type, exclude: tuple[str, ...]) -> Table:
    """The settings of one row's dataclass, made once per kind: reading the type hints cost
    2 ms a row, 200 s for a genesis of 100,000 accounts. Messages name the row by `where`."""
    return Table("", kind, settings_of(kind, "", exclude), exclude)


def _hex(value: Any, where: str) -> bytes:
    if isinstance(value, str) and re.fullmatch(r"(0x)?([0-9a-fA-F]{2})*", value):
        return bytes.fromhex(value.removeprefix("0x"))
    raise SchemaError(where, f"must be a hex string, got {_show(value)}")


def _refused(setting: Setting, value: Any, where: str) -> SchemaError:
    return SchemaError(where, f"{_show(value)} is not {setting.expected()}")


def _is_table_type(kind: Any) -> typing.TypeGuard[type]:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _is_int(kind: Any) -> bool:
    return kind is int


def _is_list(kind: Any) -> bool:
    origin = typing.get_origin(kind)
    return origin in (tuple, list)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def type_name(kind: Any, rows: type | None = None) -> str:
    """How a setting is written in TOML, for messages and the reference."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return type_name(options[0], rows) if len(options) == 1 else " or ".join(type_name(a) for a in options)
    if rows is not None or dataclasses.is_dataclass(kind):
        described = rows or kind
        keys = ", ".join(f.name for f in dataclasses.fields(described))
        return f"list of tables {{{keys}}}" if _is_list(kind) else f"table {{{keys}}}"
    names = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "path (string)",
             bytes: "hex string"}
    if kind in names:
        return names[kind]
    if origin in (tuple, list):
        return "list"
    return "table"


# documentation ----------------------------------------------------------------------------
@functools.cache
def field_comments(kind: type) -> dict[str, str]:
    """The comment lines right above a field, or the comment at the end of its line, in the
    dataclass's source: the documentation its authors already write."""
    try:
        source = inspect.getsource(kind)
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(kind)}
    lines = source.splitlines()
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    found: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        match = re.match(r"\s+(\w+)\s*:", line)
        if not match or match.group(1) not in names or match.group(1) in found:
            continue
        above: list[str] = []
        previous = number - 1
        while previous in comments and lines[previous - 1].lstrip().startswith("#"):
            above.insert(0, comments[previous])
            previous -= 1
        beside = comments.get(number, "") if not line.lstrip().startswith("#") else ""
        found[match.group(1)] = " ".join([*above, beside]).strip()
    return found


def markdown(tables: list[Table], file_name: str) -> str:
    """The reference table of one document: table, key, type, default, meaning."""
    lines = [f"| `{file_name}` | setting | type | default | meaning |", "|---|---|---|---|---|"]
    for table in tables:
        label = f"`[{table.name}]`" if table.name else "top level"
        for setting in table.settings:
            lines.append(f"| {label} | `{setting.key}` | {_md(setting.expected())} | {_default(setting)} | "
                         f"{_md(setting.doc)} |")
            label = ""
    return "\n".join(lines) + "\n"


def _default(setting: Setting) -> str:
    value = setting.default
    if value is REQUIRED:
        return "required"
    if value is None or value in ((), {}, []):
        return "–"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int) and value >= 1024 and value % 1024 == 0 and "bytes" in setting.key:
        return f"{value} ({_binary(value)})"
    if isinstance(value, str | Path):
        return f"`{value}`"
    return str(value)


def _binary(value: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value % size == 0:
            return f"{value // size} {unit}"
    return str(value)


def _md(text: str) -> str:
    return text.replace("|", "\\|")
