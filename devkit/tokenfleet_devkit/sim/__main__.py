"""`python -m tokenfleet_devkit.sim`: the same as `tokenfleet sim`."""

import sys

from tokenfleet_devkit.sim.cli import main

sys.exit(main())
