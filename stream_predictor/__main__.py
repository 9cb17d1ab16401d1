"""`python -m stream_predictor [COMMAND …]`: the CLI, as `stream-predictor` and `python run.py` run it."""

import sys

from stream_predictor.cli import main

if __name__ == "__main__":
    sys.exit(main())
