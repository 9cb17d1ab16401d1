"""python run.py [COMMAND …]: the CLI; with no arguments, the default job from configs/default.yaml."""

import sys

from stream_predictor.cli import main

if __name__ == "__main__":
    sys.exit(main())
