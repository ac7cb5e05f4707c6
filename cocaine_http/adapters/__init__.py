"""The HTTP adapters: an unchanged ASGI or WSGI app served over the worker's sessions.

One level above `aio`: each adapter turns a `Session` into one HTTP request/response cycle of
the app (`asgi`, `wsgi` with `wsgi_io`, ASGI `lifespan`), and `app` builds the worker around
an app for the CLI and for a manifest's slave script.
"""
