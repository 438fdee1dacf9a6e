"""``python -m integrations.caffe``: the same as ``em caffe``."""

import sys

from .._commands import caffe

sys.exit(caffe())
