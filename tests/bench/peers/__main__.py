"""``python -m tests.bench.peers``: see ``tests.bench.peers.run``."""

import sys

from tests.bench.peers.run import main

sys.exit(main())
