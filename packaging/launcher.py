"""Entry script of the PyInstaller build: the same ``detr-studio`` command as the installed package."""

import multiprocessing
import sys

from detr_studio.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # data-loader workers re-enter the frozen program
    sys.exit(main())
