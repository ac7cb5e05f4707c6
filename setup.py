from setuptools import setup

setup(cffi_modules=["build_decoder.py:ffibuilder"])
