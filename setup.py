"""The one thing pyproject.toml cannot say: the optional C matcher of ``em mxnet``'s block
path (integrations/mxnet_log/_rowscan.c). Where it does not build (no compiler), em installs
without it and reads logs with regular expressions alone: the same events, slower."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("integrations.mxnet_log._rowscan",
                             ["integrations/mxnet_log/_rowscan.c"], optional=True)])
