"""``python -m batchrun.sim``: the same as ``batchrun sim``."""

import sys

from batchrun.cli import main

main(["sim", *sys.argv[1:]])
