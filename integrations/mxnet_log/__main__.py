"""``python -m integrations.mxnet_log``: the same as ``em mxnet``."""

import sys

from .command import main

sys.exit(main())
