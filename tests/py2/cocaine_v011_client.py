# Runs under Python 2.7 with PyPI cocaine==0.11.1.17: the reference v0.11 framework's service
# client talks to our DevServices (locator from --locator, storage, logging, an app service).
# Prints one JSON object with what it saw; the pytest side checks it.
from __future__ import print_function

import json
import os
import site
import sys

# The package is installed with --target; its namespace-package .pth only works in a site dir.
site.addsitedir(os.environ["COCAINE_PY2_SITE"])

from cocaine.exceptions import CocaineError
from cocaine.services import Service


def main():
    out = {}
    storage = Service("storage")  # locator address from --locator, as in a worker
    out["storage_api"] = sorted(storage.api.keys())
    list(storage.perform_sync("write", "crossns", "key", "from-py2", ["py2tag"], timeout=5))
    out["read"] = list(storage.perform_sync("read", "crossns", "preset", timeout=5))
    out["find"] = list(storage.perform_sync("find", "crossns", ["py2tag"], timeout=5))
    try:
        list(storage.perform_sync("read", "crossns", "missing", timeout=5))
        out["missing"] = None
    except CocaineError as err:
        out["missing"] = str(err)
    try:
        Service("nosuch")
        out["nosuch"] = None
    except Exception as err:
        out["nosuch"] = str(err)
    app = Service("crossapp")
    out["enqueue"] = list(app.perform_sync("enqueue", "ping", "hi", timeout=5))

    from cocaine.logging import Logger
    logger = Logger()
    out["logger"] = type(logger).__name__
    logger.error("hello from python 2")
    from tornado import gen
    from tornado.ioloop import IOLoop
    IOLoop.current().run_sync(lambda: gen.moment)  # let the write stream flush
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
