"""``python -m dense_nas`` runs the ``dense-nas`` command."""

import sys

from dense_nas.cli import main

sys.exit(main())
