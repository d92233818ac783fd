"""Run the training commands as `python -m trainer COMMAND`."""

import sys

from trainer.cli import main

sys.exit(main())
