"""Build of the compiled parts: the cffi message decoder (build_decoder.py) and the CPython
extensions of the HTTP fast paths, each with a pure-Python reference (docs/design.md)."""

from setuptools import Extension, setup

#: (module, source in csrc/): each a fast path whose Python reference is named in its source.
NATIVE = [
    ("cocaine_http.protocol._cframing", "framing.c"),
    ("cocaine_http.http._crequest", "request.c"),
    ("cocaine_http.http._caccess", "accessline.c"),
    ("cocaine_http.http._cenviron", "environ.c"),
]

setup(
    cffi_modules=["build_decoder.py:ffibuilder"],
    ext_modules=[
        Extension(name, [f"csrc/{source}"], extra_compile_args=["-O2", "-Wall", "-Wextra"])
        for name, source in NATIVE
    ],
)
