"""``python -m integrations.caffe``: the same as ``em caffe``."""

import sys

from ._cli import main

sys.exit(main())
