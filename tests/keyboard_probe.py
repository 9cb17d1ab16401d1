"""Runs a KeyboardLabeller in its own process (pynput's X listener thread outlives stop() on some servers).

Reads commands from stdin, one per line: `label` prints the current label, `paused` prints the pause state,
`quit` exits.
"""

import os
import sys

from stream_predictor.learn.labellers import KeyboardLabeller

labeller = KeyboardLabeller(sys.argv[1] if len(sys.argv) > 1 else "lsr3", pause_key="f9")
print("ready", flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "label":
        print(labeller.label(None), flush=True)
    elif command == "paused":
        print(labeller.paused, flush=True)
    elif command == "quit":
        break
sys.stdout.flush()
os._exit(0)  # do not wait for the listener thread
