from typing import Any

def environ(template: dict[str, Any], request: Any, session: object, root: str,
            servers: dict[Any, tuple[str, str]],
            keys: dict[bytes, str | None]) -> dict[str, Any] | None: ...
