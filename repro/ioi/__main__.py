import sys

from repro.ioi.cli import main

sys.exit(main())
