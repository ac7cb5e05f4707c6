# Strategy: an ordinary FastAPI app: JSON with path and query parameters, a streamed response
# produced while the client reads it, and a lifespan that puts state in place once per worker
# process (each request sees it as request.state).
"""Example FastAPI app: `cocaine-http dev examples.fastapi_app:app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    # Open connection pools, load models, ... once per worker process.
    yield {"greeting": "hello", "started": True}


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def root(request: Request) -> dict[str, Any]:
    return {"greeting": request.state.greeting, "started": request.state.started}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None, limit: int = 10) -> dict[str, Any]:
    return {"item_id": item_id, "q": q, "limit": limit}


@app.post("/echo")
async def echo(request: Request) -> dict[str, Any]:
    body = await request.json()
    return {"received": body, "content_type": request.headers.get("content-type")}


@app.get("/stream")
async def stream(n: int = 5) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        for i in range(n):
            yield f"data: event {i}\n\n".encode()

    return StreamingResponse(events(), media_type="text/event-stream")
