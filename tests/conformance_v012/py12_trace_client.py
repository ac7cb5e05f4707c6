"""The reference v0.12 framework's client calling an app with `trace=` (run with the py12
venv's python): argv is the locator "host:port" and an app name. Three enqueues on one
connection: a trace, the same trace again, then another one; PY12 stores the trace headers in
the connection's header table on the first call, refers to them by index alone on the second
and stores new values under the stored names on the third. Prints one JSON line: the bodies."""

import collections
import collections.abc
import json
import sys

collections.MutableMapping = collections.abc.MutableMapping  # cocaine 0.12 predates 3.10

import msgpack  # noqa: E402
from tornado import gen, ioloop  # noqa: E402

from cocaine.detail.channel import EmptyResponse  # noqa: E402
from cocaine.detail.trace import Trace  # noqa: E402
from cocaine.services import Service  # noqa: E402

TRACES = [Trace(0x1111, 0x2222, 0), Trace(0x1111, 0x2222, 0), Trace(0x0102030405060708, 7, 9)]


@gen.coroutine
def main(host, port, app):
    svc = Service(app, endpoints=[(host, int(port))])
    bodies = []
    for trace in TRACES:
        channel = yield svc.enqueue("http", trace=trace)
        yield channel.tx.write(msgpack.packb(["GET", "/", "1.1", [], b""]))
        yield channel.tx.close()
        chunks = []
        while True:  # write chunks, then close (EmptyResponse)
            chunk = yield channel.rx.get()
            if isinstance(chunk, EmptyResponse):
                break
            chunks.append(chunk[0] if isinstance(chunk, (list, tuple)) else chunk)
        bodies.append(json.loads(b"".join(chunks[1:]).decode()))
    print(json.dumps(bodies))


ioloop.IOLoop.current().run_sync(lambda: main(*sys.argv[1].rsplit(":", 1), sys.argv[2]),
                                 timeout=30)
