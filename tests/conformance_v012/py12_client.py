"""The reference v0.12 framework as a client of the runtime (run with the py12 venv's python):
argv is the locator "host:port" and an app name; prints one JSON line of what it got."""

import collections
import collections.abc
import json
import sys

collections.MutableMapping = collections.abc.MutableMapping  # cocaine 0.12 predates 3.10

import msgpack  # noqa: E402
from tornado import gen, ioloop  # noqa: E402

from cocaine.detail.channel import EmptyResponse  # noqa: E402
from cocaine.exceptions import ServiceError  # noqa: E402
from cocaine.services import Locator, Service  # noqa: E402


def text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [text(v) for v in value]
    return value


@gen.coroutine
def main(host, port, app):
    endpoints = [(host, int(port))]
    out = {}
    locator = Locator(endpoints=endpoints)
    channel = yield locator.resolve("storage")
    resolved = yield channel.rx.get()
    out["storage_version"] = resolved[1]
    out["storage_methods"] = sorted(text(m[0]) for m in resolved[2].values())
    storage = Service("storage", endpoints=endpoints)
    channel = yield storage.write("xns", "key", b"\x00\xffblob", ["xt"])
    out["write"] = text((yield channel.rx.get()))
    channel = yield storage.read("xns", "key")
    out["read"] = list((yield channel.rx.get()))
    channel = yield storage.find("xns", ["xt"])
    out["find"] = text((yield channel.rx.get()))
    channel = yield storage.read("xns", "missing")
    try:
        yield channel.rx.get()
    except ServiceError as err:
        out["error"] = [err.category, err.code]
    svc = Service(app, endpoints=endpoints)
    channel = yield svc.enqueue("http")
    yield channel.tx.write(msgpack.packb(["GET", "/x?q=1", "1.1", [["X-A", "b"]], b""]))
    yield channel.tx.close()
    chunks = []
    while True:  # write chunks, then close (EmptyResponse)
        chunk = yield channel.rx.get()
        if isinstance(chunk, EmptyResponse):
            break
        chunks.append(list(chunk))
    out["enqueue"] = chunks
    print(json.dumps(out))


ioloop.IOLoop.current().run_sync(lambda: main(*sys.argv[1].rsplit(":", 1), sys.argv[2]),
                                 timeout=30)
