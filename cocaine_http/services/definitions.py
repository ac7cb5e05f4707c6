# Strategy: a definition is data that says how the Python face of a service differs from its
# raw method table: which Python names map to which wire methods, how reply chunks are unpacked
# and folded into a result, how Python arguments become wire arguments, which methods stream,
# and which extra methods (plain async functions) exist. Both spellings, a class deriving from
# `Definition` and a plain mapping, are normalised to one dict {python_name: entry} by
# `normalize`, and `build_methods` applies the shipped default for the service and then the
# project's own definition on top of the method table the locator returned.
#
# v0.11 native services double-encode: each reply chunk holds one msgpack value
# (docs/protocol.md §4.1); app services' enqueue chunks are the worker's bytes, left untouched.
# In v0.12 a reply message carries its value as its arguments, so a chunk reaches the unpack
# functions as that argument list (a list, never bytes): no arguments mean None, one argument
# is the value, several are the list. The unpack functions below take both forms.
"""Service definitions: per-service customisation of the generated client methods."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Union

import msgpack


#: One reply chunk: bytes (v0.11) or the reply message's argument list (v0.12).
Chunk = Union[bytes, list[Any]]


def message_value(args: list[Any]) -> Any:
    """The value a v0.12 reply message carries in its arguments."""
    if not args:
        return None
    return args[0] if len(args) == 1 else list(args)


def _texts(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, (list, tuple)):
        return [_texts(v) for v in value]
    if isinstance(value, dict):
        return {_texts(k): _texts(v) for k, v in value.items()}
    return value


def unpack_value(data: Chunk) -> Any:
    """One value; strings decoded as UTF-8 text, or all left as bytes if one is not."""
    if type(data) is list:
        value = message_value(data)
        try:
            return _texts(value)
        except UnicodeDecodeError:
            return value
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except UnicodeDecodeError:
        return msgpack.unpackb(data, raw=True, strict_map_key=False)


def unpack_raw(data: Chunk) -> Any:
    """One value with every string left as bytes (blobs: storage.read)."""
    if type(data) is list:
        return message_value(data)
    return msgpack.unpackb(data, raw=True, strict_map_key=False)


def unpack_none(data: Chunk) -> Any:
    """The chunk's bytes untouched (app services forward the worker's bytes)."""
    if type(data) is list:
        return message_value(data)
    return data


def fold(values: list[Any]) -> Any:
    """Result of a non-streaming call: None for no chunk, the value for one, else the list."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return values


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """How one Python method calls the service.

    Attributes:
        wire: the method name in the locator's table (default: the Python name).
        streaming: return an async iterator of chunks instead of awaiting a whole reply
            (default: when the method's protocol graph says its answer streams, v0.12).
        unpack: turns one reply chunk into a value (default `unpack_value`).
        result: folds the unpacked values of a whole reply (default `fold`).
        args: builds the wire argument list from the Python arguments (default: as given).
        upstream: builds, from the same arguments, the `write` messages sent on the call's
            channel after it (methods whose upstream protocol has `write`, v0.12 enqueue).
        timeout: default timeout for this method (default: the service's).
    """

    wire: str | None = None
    streaming: bool | None = None
    unpack: Callable[[Chunk], Any] = unpack_value
    result: Callable[[list[Any]], Any] = fold
    args: Callable[..., list[Any]] | None = None
    timeout: float | None = None
    upstream: Callable[..., list[list[Any]]] | None = None


def method(**options: Any) -> MethodSpec:
    """`MethodSpec(**options)`, the spelling used inside definition classes."""
    return MethodSpec(**options)


#: A definition entry: a MethodSpec, a dict of MethodSpec options, None (hide the method) or an
#: async function `fn(service, *args, **kwargs)` added as a method.
Entry = Union[MethodSpec, Mapping[str, Any], None, Callable[..., Any]]


class Definition:
    """Base class for class-form definitions.

    Class attributes become entries: `read = method(unpack=unpack_raw)`, `fetch =
    method(wire="read")`, `remove = None` (hide), or an `async def helper(self, ...)`, where
    `self` is the Service.
    """


DefinitionLike = Union[type[Definition], Definition, Mapping[str, Entry], None]


def normalize(definition: DefinitionLike) -> dict[str, Entry]:
    """The {python_name: entry} dict of a class, instance or mapping definition."""
    if definition is None:
        return {}
    if isinstance(definition, Mapping):
        return dict(definition)
    cls = definition if isinstance(definition, type) else type(definition)
    entries: dict[str, Entry] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or klass is Definition:
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_"):
                entries[name] = value
    return entries


def _spec(name: str, entry: MethodSpec | Mapping[str, Any]) -> MethodSpec:
    spec = entry if isinstance(entry, MethodSpec) else MethodSpec(**entry)
    return spec if spec.wire is not None else replace(spec, wire=name)


def build_methods(
    table: Mapping[int, str], *layers: DefinitionLike, streams: frozenset[str] = frozenset()
) -> tuple[dict[str, MethodSpec], dict[str, Callable[..., Any]]]:
    """Apply definition layers (first = shipped default) to a method table; `streams` names
    the methods whose protocol graph streams (their default `streaming`).

    Returns:
        (specs, extras): wire-backed methods by Python name, and added functions by name.
        Entries naming a wire method the table lacks are left out, so one definition can serve
        several versions of a service.
    """
    wire = set(table.values())
    specs: dict[str, MethodSpec] = {name: MethodSpec(wire=name) for name in wire}
    extras: dict[str, Callable[..., Any]] = {}
    for layer in layers:
        for name, entry in normalize(layer).items():
            specs.pop(name, None)
            extras.pop(name, None)
            if entry is None:
                continue
            if isinstance(entry, (MethodSpec, Mapping)):
                spec = _spec(name, entry)
                if spec.wire in wire:
                    specs[name] = spec
            elif callable(entry):
                extras[name] = entry
            else:
                raise TypeError(f"definition entry {name!r} must be a method spec, None or callable")
    for name, spec in specs.items():
        if spec.streaming is None:
            specs[name] = replace(spec, streaming=spec.wire in streams)
    return specs, extras


# -- shipped defaults (docs/protocol.md §4.2, §5, §8) ---------------------------------------------


def _first(values: list[Any]) -> Any:
    return values[0] if values else None


def _write_args(namespace: str, key: str, value: bytes | str, tags: list[str] | None = None
                ) -> list[Any]:
    args: list[Any] = [namespace, key, value]
    if tags is not None:
        args.append(list(tags))
    return args


def _enqueue_args(event: str, data: bytes | str = b"", tag: str | None = None) -> list[Any]:
    return [event, data] if tag is None else [event, data, tag]


def _open_args(event: str, data: bytes | str = b"", tag: str | None = None) -> list[Any]:
    return [event] if tag is None else [event, tag]


def _upstream_data(event: str, data: bytes | str = b"", tag: str | None = None
                   ) -> list[list[Any]]:
    return [[data]]


#: The locator's resolve answer, whole: the dialect reads its layout (Dialect.resolution).
LOCATOR: dict[str, Entry] = {"resolve": MethodSpec(result=_first, unpack=unpack_value)}
STORAGE: dict[str, Entry] = {
    "read": MethodSpec(unpack=unpack_raw),
    "write": MethodSpec(args=_write_args),
    "find": MethodSpec(result=lambda values: list(values[0]) if values else []),
}
LOGGING: dict[str, Entry] = {}
NODE: dict[str, Entry] = {}
APP: dict[str, Entry] = {
    "enqueue": MethodSpec(streaming=True, unpack=unpack_none, args=_enqueue_args),
}
#: Apps whose enqueue takes its data as upstream writes (v0.12: `[event]`, write, close).
APP_STREAMED: dict[str, Entry] = {
    "enqueue": MethodSpec(streaming=True, unpack=unpack_none, args=_open_args,
                          upstream=_upstream_data),
}

#: Method tables of services with a fixed protocol (the locator is never resolved).
LOCATOR_TABLE = {0: "resolve", 1: "synchronize", 2: "reports", 3: "refresh"}

DEFAULTS: dict[str, dict[str, Entry]] = {
    "locator": LOCATOR,
    "storage": STORAGE,
    "logging": LOGGING,
    "node": NODE,
}


def default_for(
    name: str, table: Mapping[int, str], upstream: frozenset[str] = frozenset()
) -> dict[str, Entry]:
    """The shipped definition for a service: by name, else the app definition when the table
    looks like an app's (it has `enqueue`); `upstream` names the methods whose upstream
    protocol takes `write` messages."""
    if name in DEFAULTS:
        return DEFAULTS[name]
    if "enqueue" in table.values():
        return APP_STREAMED if "enqueue" in upstream else APP
    return {}
