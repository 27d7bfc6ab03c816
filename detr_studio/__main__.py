"""``python -m detr_studio``: the same as the ``detr-studio`` command."""

import sys

from .cli import main

sys.exit(main())
