# Strategy: load "module:attr" the way uvicorn and gunicorn do (the current directory first on
# sys.path, dotted attributes allowed, `--factory` calls the attribute), and turn every way that
# can fail into one AppImportError whose message is a single line naming what was missing. The
# interface is then decided once: a coroutine function (or an object whose __call__ is one, as
# Starlette, FastAPI and Django's ASGIHandler are) is ASGI 3, anything else callable is WSGI
# (Flask, Django's WSGIHandler).
"""Find the user's application object and decide whether it speaks ASGI or WSGI."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from ..errors import AppImportError


def import_from_string(target: str) -> Any:
    """Import `module:attr` (attr may be dotted: `pkg.mod:obj.app`).

    Raises:
        AppImportError: malformed target, missing module or attribute, or the module raised
            while being imported; the message is one line.
    """
    module_name, sep, attrs = target.partition(":")
    if not sep or not module_name or not attrs:
        raise AppImportError(f'app must be given as "module:attribute", got {target!r}')
    _ensure_cwd_on_path()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name + ".").startswith(exc.name + "."):
            raise AppImportError(f"cannot import module {module_name!r}: not found") from exc
        raise AppImportError(f"error importing {module_name!r}: {_one_line(exc)}") from exc
    except Exception as exc:
        raise AppImportError(f"error importing {module_name!r}: {_one_line(exc)}") from exc
    value: Any = module
    for part in attrs.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise AppImportError(
                f"attribute {attrs!r} not found in module {module_name!r}"
            ) from None
    return value


def load_app(target: str, *, factory: bool = False) -> Any:
    """The application object for `target`, calling it first when `factory` is set."""
    value = import_from_string(target)
    if factory:
        if not callable(value):
            raise AppImportError(f"--factory given but {target!r} is not callable")
        try:
            value = value()
        except Exception as exc:
            raise AppImportError(f"app factory {target!r} failed: {_one_line(exc)}") from exc
    if not callable(value):
        raise AppImportError(f"{target!r} is not callable (got {type(value).__name__})")
    if not factory and _takes_no_arguments(value):
        raise AppImportError(f"{target!r} looks like an app factory (it takes no arguments): "
                             "add --factory")
    return value


def _takes_no_arguments(value: Any) -> bool:
    """True for a function that can be called without arguments: WSGI apps take two and ASGI
    apps three, so such a function is a factory served by mistake."""
    if not (inspect.isfunction(value) or inspect.ismethod(value)):
        return False
    try:
        parameters = inspect.signature(value).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                  inspect.Parameter.VAR_POSITIONAL)
    return not any(p.kind in positional for p in parameters)


def is_coroutine_callable(app: Any) -> bool:
    """True for `async def` functions, partials of them, and objects whose __call__ is one
    (including callables marked with asgiref's markcoroutinefunction)."""
    if _is_coroutine(app):
        return True
    call = getattr(app, "__call__", None)
    return call is not None and not inspect.isfunction(app) and _is_coroutine(call)


def detect_interface(app: Any, interface: str = "auto") -> str:
    """"asgi" or "wsgi": the given interface, or the auto-detected one."""
    if interface in ("asgi", "wsgi"):
        return interface
    return "asgi" if is_coroutine_callable(app) else "wsgi"


def _is_coroutine(func: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    # asgiref's markcoroutinefunction on Python < 3.12 sets this marker.
    marker = getattr(func, "_is_coroutine", None)
    return marker is not None and marker is getattr(
        sys.modules.get("asyncio.coroutines"), "_is_coroutine", object()
    )


def _ensure_cwd_on_path() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
