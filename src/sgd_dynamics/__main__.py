"""``python -m sgd_dynamics`` runs the command line."""

import sys

from sgd_dynamics.cli import main

sys.exit(main())
