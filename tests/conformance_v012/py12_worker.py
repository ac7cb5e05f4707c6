"""The reference v0.12 framework as an HTTP worker: the same answer as ours in ECHO_APP.
Executed by the runtime through a slave script (argv: --app --endpoint --locator --protocol 1
--uuid)."""

import collections
import collections.abc

collections.MutableMapping = collections.abc.MutableMapping  # cocaine 0.12 predates 3.10

from cocaine.decorators import http  # noqa: E402
from cocaine.worker import Worker  # noqa: E402


@http
def echo(request, response):
    req = yield request.read()
    meta = req.meta
    body = "%s %s %s %s" % (meta["method"], meta["query_string"], req.headers.get("X-A"),
                            req.body.decode())
    response.write_head(200, [("Content-Type", "text/plain"), ("X-Impl", "same")])
    response.write(body.encode())
    response.close()


Worker().run({"http": echo})
