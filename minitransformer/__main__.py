"""``python -m minitransformer ...``: the ``minitransformer`` command, for where its script is not on PATH."""

import sys

from minitransformer.cli import main

sys.exit(main())
