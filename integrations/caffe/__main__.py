"""``python -m integrations.caffe``: the same as ``em caffe``."""

import sys

from .command import main

sys.exit(main())
