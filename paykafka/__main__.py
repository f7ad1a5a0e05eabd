"""``python -m paykafka`` runs the same CLI as the ``paykafka`` console script."""

import sys

from paykafka._cli import main

sys.exit(main())
