# Strategy: an ordinary Flask app, nothing Cocaine-specific in it, covering what real apps do:
# JSON in and out, a form with a file upload, cookies and the signed session, a redirect, a
# streamed response, an error handler, and large streamed bodies in both directions (read and
# produced in 64 KiB pieces, so memory stays flat whatever the size).
"""Example Flask app: `cocaine-http dev examples.flask_app.app:app`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from flask import Flask, Response, jsonify, redirect, request, session, stream_with_context, url_for

app = Flask(__name__)
app.secret_key = "example-only-secret"  # use a real secret from the environment in production

PIECE = 64 * 1024


class TeapotError(Exception):
    """Raised by /error to show an error handler at work."""


@app.get("/")
def index() -> str:
    return "Hello from Flask on Cocaine!\n"


@app.route("/json", methods=["GET", "POST"])
def json_echo() -> Response:
    if request.method == "POST":
        return jsonify(received=request.get_json(), args=request.args.to_dict())
    return jsonify(message="hello", numbers=[1, 2, 3], args=request.args.to_dict())


@app.post("/form")
def form() -> Response:
    files = {
        name: {
            "filename": f.filename,
            "size": len(data := f.read()),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        for name, f in request.files.items()
    }
    return jsonify(fields=request.form.to_dict(), files=files)


@app.get("/session")
def counter() -> Response:
    session["visits"] = session.get("visits", 0) + 1
    response = jsonify(visits=session["visits"], flavour=request.cookies.get("flavour"))
    response.set_cookie("flavour", "oatmeal", httponly=True)
    return response


@app.get("/redirect")
def go_home() -> Response:
    return redirect(url_for("index"))


@app.get("/stream")
def stream() -> Response:
    count = request.args.get("n", 5, type=int)

    def lines() -> Iterator[str]:
        for i in range(count):
            yield f"line {i}\n"

    return Response(stream_with_context(lines()), mimetype="text/plain")


@app.get("/download")
def download() -> Response:
    """`size` bytes produced piece by piece, never held whole."""
    size = request.args.get("size", 1024 * 1024, type=int)

    def pieces() -> Iterator[bytes]:
        block = b"x" * PIECE
        left = size
        while left > 0:
            yield block[: min(left, PIECE)]
            left -= PIECE

    headers = {"Content-Length": str(size)}
    return Response(pieces(), mimetype="application/octet-stream", headers=headers)


@app.post("/upload")
def upload() -> Response:
    """Read the body as a stream and answer its size and digest."""
    digest = hashlib.sha256()
    size = 0
    while piece := request.stream.read(PIECE):
        digest.update(piece)
        size += len(piece)
    return jsonify(size=size, sha256=digest.hexdigest())


@app.get("/error")
def fail() -> str:
    raise TeapotError("the pot is a teapot")


@app.errorhandler(TeapotError)
def teapot(exc: TeapotError) -> tuple[Response, int]:
    return jsonify(error=str(exc)), 418


@app.errorhandler(404)
def not_found(exc: Exception) -> tuple[Response, int]:
    return jsonify(error="not found", path=request.path), 404
