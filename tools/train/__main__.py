import sys

from tools.train.cli import main

sys.exit(main())
