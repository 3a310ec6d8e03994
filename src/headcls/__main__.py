import sys

from headcls.cli import main

sys.exit(main())
