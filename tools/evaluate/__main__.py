import sys

from tools.evaluate.cli import main

sys.exit(main())
