"""``python -m twisted_patch`` is the ``twisted-patch`` command."""

import sys

from twisted_patch.cli import main

sys.exit(main())
