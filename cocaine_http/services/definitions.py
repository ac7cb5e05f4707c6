# Strategy: a definition is data that says how the Python face of a service differs from its
# raw method table: which Python names map to which wire methods, how reply chunks are unpacked
# and folded into a result, how Python arguments become wire arguments, which methods stream,
# and which extra methods (plain async functions) exist. Both spellings, a class deriving from
# `Definition` and a plain mapping, are normalised to one dict {python_name: entry} by
# `normalize`, and `build_methods` applies the shipped default for the service and then the
# project's own definition on top of the method table the locator returned.
#
# v0.11 native services double-encode: each reply chunk holds one msgpack value
# (PROTOCOL.md §4.1); app services' enqueue chunks are the worker's bytes, left untouched.
"""Service definitions: per-service customisation of the generated client methods."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Union

import msgpack


def unpack_value(data: bytes) -> Any:
    """One msgpack value; strings decoded as UTF-8 text, or left as bytes if they are not."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except UnicodeDecodeError:
        return msgpack.unpackb(data, raw=True, strict_map_key=False)


def unpack_raw(data: bytes) -> Any:
    """One msgpack value with every string left as bytes (blobs: storage.read)."""
    return msgpack.unpackb(data, raw=True, strict_map_key=False)


def unpack_none(data: bytes) -> bytes:
    """The chunk itself (app services forward the worker's bytes untouched)."""
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
        streaming: return an async iterator of chunks instead of awaiting a whole reply.
        unpack: turns one reply chunk into a value (default `unpack_value`).
        result: folds the unpacked values of a whole reply (default `fold`).
        args: builds the wire argument list from the Python arguments (default: as given).
        timeout: default timeout for this method (default: the service's).
    """

    wire: str | None = None
    streaming: bool = False
    unpack: Callable[[bytes], Any] = unpack_value
    result: Callable[[list[Any]], Any] = fold
    args: Callable[..., list[Any]] | None = None
    timeout: float | None = None


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
    table: Mapping[int, str], *layers: DefinitionLike
) -> tuple[dict[str, MethodSpec], dict[str, Callable[..., Any]]]:
    """Apply definition layers (first = shipped default) to a method table.

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
    return specs, extras


# -- shipped defaults (PROTOCOL.md §4.2, §5, §8) -------------------------------------------------


def _resolve_result(values: list[Any]) -> Any:
    (host, port), version, table = values[0]
    return (host, port), version, {int(k): v for k, v in table.items()}


def _write_args(namespace: str, key: str, value: bytes | str, tags: list[str] | None = None
                ) -> list[Any]:
    args: list[Any] = [namespace, key, value]
    if tags is not None:
        args.append(list(tags))
    return args


def _enqueue_args(event: str, data: bytes | str = b"", tag: str | None = None) -> list[Any]:
    return [event, data] if tag is None else [event, data, tag]


LOCATOR: dict[str, Entry] = {"resolve": MethodSpec(result=_resolve_result)}
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

#: Method tables of services with a fixed protocol (the locator is never resolved).
LOCATOR_TABLE = {0: "resolve", 1: "synchronize", 2: "reports", 3: "refresh"}

DEFAULTS: dict[str, dict[str, Entry]] = {
    "locator": LOCATOR,
    "storage": STORAGE,
    "logging": LOGGING,
    "node": NODE,
}


def default_for(name: str, table: Mapping[int, str]) -> dict[str, Entry]:
    """The shipped definition for a service: by name, else the app definition when the table
    looks like an app's (it has `enqueue`)."""
    if name in DEFAULTS:
        return DEFAULTS[name]
    if "enqueue" in table.values():
        return APP
    return {}
