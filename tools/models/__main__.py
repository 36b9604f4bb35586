import sys

from tools.models.cache import main

sys.exit(main())
