import sys

from transfer_core.cli import main

# Guarded: a training job's child process (service/childjobs.py) imports the main module again.
if __name__ == "__main__":
    sys.exit(main())
