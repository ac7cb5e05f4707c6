"""Using Cocaine services: storage, an app service and the logger, async and from threads.

Two ways to run it:

1. A standalone script (starts its own DevServices on a free port unless --locator is given):

       python examples/services_demo.py
       python examples/services_demo.py --locator 127.0.0.1:10053   # e.g. `cocaine-http dev`'s

2. As a Flask app under the dev runtime, whose views call storage through the sync facade:

       cocaine-http dev examples.services_demo:app
       curl -X POST --data hello http://127.0.0.1:8080/put/greeting
       curl http://127.0.0.1:8080/get/greeting
       curl http://127.0.0.1:8080/keys
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from flask import Flask, request

from cocaine_http.errors import ServiceError
from cocaine_http.services.logging import CocaineHandler
from cocaine_http.services import Client

# -- the Flask app (WSGI views run in threads: they use client.sync) ---------------------------

# In a worker the locator address comes from --locator; the client is bound to no loop yet
# (this module is imported before the worker's loop runs), so the sync facade starts a loop
# thread of its own on first use.
client = Client()
storage = client.sync.service("storage")
app = Flask(__name__)
log = logging.getLogger("services_demo")


@app.post("/put/<key>")
def put(key: str) -> str:
    storage.write("demo", key, request.get_data(), ["demo"])
    log.info("stored %s", key)
    return "stored\n"


@app.get("/get/<key>")
def get(key: str) -> tuple[bytes, int]:
    try:
        return storage.read("demo", key), 200
    except ServiceError as exc:
        return exc.message.encode(), 404


@app.get("/keys")
def keys() -> str:
    return json.dumps(storage.find("demo", ["demo"]))


# -- the standalone script (async API) ----------------------------------------------------------


async def demo(locator: str) -> None:
    async with Client(locator) as c:
        st = await c.service("storage")
        await st.write("demo", "answer", b"42", ["demo"])
        print("read  ->", await st.read("demo", "answer"))
        print("find  ->", await st.find("demo", ["demo"]))
        try:
            await st.read("demo", "missing")
        except ServiceError as exc:
            print("error ->", exc)

        logger = c.logger("app/services_demo")
        await logger.wait_ready(5)
        logger.info("hello from the services demo")
        pylog = logging.getLogger("services_demo.script")
        pylog.addHandler(CocaineHandler(logger))
        pylog.warning("python logging reaches Cocaine too")
        print("logger verbosity ->", logger.verbosity)


async def main(argv: list[str]) -> None:
    if "--locator" in argv:
        await demo(argv[argv.index("--locator") + 1])
        return
    from cocaine_http.dev.services import DevServices

    async with DevServices(locator_port=0) as services:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
        await demo("%s:%d" % services.locator_endpoint)
        await asyncio.sleep(0.1)  # let the last log messages arrive before the services stop


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
