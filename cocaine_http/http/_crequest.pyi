from typing import TypeVar

_T = TypeVar("_T")

LARGE_FRAME: int

def parse(cls: type[_T], frame: object, config: object) -> _T | None: ...
