# Type stub for the cffi extension built from csrc/ by build_decoder.py. The C interface itself
# is declared in csrc/cdecoder.h; cffi objects are dynamic, so they are typed loosely here.
from typing import Any

ffi: Any
lib: Any
