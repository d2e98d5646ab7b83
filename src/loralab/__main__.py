"""`python -m loralab` (and `torchrun ... -m loralab`): the `loralab` command."""

import sys

from loralab.cli import main

sys.exit(main())
