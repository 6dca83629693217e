"""``python -m tagger.cli``: the same as the ``tagger`` command."""

import sys

from .commands import main

sys.exit(main())
