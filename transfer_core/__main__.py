import sys

from transfer_core.cli import main

sys.exit(main())
