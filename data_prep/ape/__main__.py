"""``python -m data_prep.ape``."""
import sys

from .cli import main

sys.exit(main())
