"""The one thing pyproject.toml cannot say: two optional C loops, ``Run.log_many``'s packing
(em_core/_packrows.c) and the matcher of ``em mxnet``'s block path
(integrations/mxnet_log/_rowscan.c). Where they do not build (no compiler), em installs
without them and does the same in Python: the same records and events, slower."""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("em_core._packrows", ["em_core/_packrows.c"], optional=True),
    Extension("integrations.mxnet_log._rowscan", ["integrations/mxnet_log/_rowscan.c"],
              optional=True),
])
