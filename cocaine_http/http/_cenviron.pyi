from typing import Any

def headers_into(environ: dict[str, Any], headers: list[tuple[bytes, bytes]],
                 keys: dict[bytes, str | None]) -> bool: ...
