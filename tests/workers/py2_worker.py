# Runs under Python 2.7 with PyPI cocaine==0.11.1.17: the reference v0.11 framework's Worker,
# spawned by our dev runtime with the runtime's argv. `ping` answers the request chunk (packed by
# the framework's response.write, as PY11 packs every write); `http` answers through the
# framework's own @http decorator, which unpacks our request frame.
from __future__ import print_function

import os
import site

# The package is installed with --target; its namespace-package .pth only works in a site dir.
site.addsitedir(os.environ["COCAINE_PY2_SITE"])

from cocaine.decorators import http
from cocaine.worker import Worker


def ping(request, response):
    data = yield request.read()
    response.write("pong:" + data)
    response.close()


@http
def hello(request, response):
    req = yield request.read()
    body = "%s %s %s %s" % (req.meta["method"], req.meta["query_string"],
                            req.headers.get("X-Test"), req.body)
    response.write_head(200, [("Content-Type", "text/plain"), ("X-Framework", "py11")])
    response.write(body)
    response.close()


if __name__ == "__main__":
    Worker().run({"ping": ping, "http": hello})
