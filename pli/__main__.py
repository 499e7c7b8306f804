import sys

from pli.cli import main

sys.exit(main())
