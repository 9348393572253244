"""`python -m marketpulse_pipeline`: the `marketpulse` command, where its script is not on PATH."""

from marketpulse_pipeline.cli import run

run()
