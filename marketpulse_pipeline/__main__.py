"""`python -m marketpulse_pipeline`: the `marketpulse` command, where its script is not on PATH."""

import sys

from marketpulse_pipeline.cli import main

sys.exit(main())
