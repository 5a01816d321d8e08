"""``python -m batchrun.sim``: the same as ``batchrun sim``."""

from batchrun.sim.cli import main

main()
