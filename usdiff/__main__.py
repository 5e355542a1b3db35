"""``python -m usdiff ...`` runs the command line (same as ``usdiff ...``)."""
import sys

from .cli import main

sys.exit(main())
