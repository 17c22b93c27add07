import sys

from kvbox.cli.main import main

sys.exit(main())
