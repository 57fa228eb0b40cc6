"""``python -m one2any_ros ...``: the ``one2any`` command (cli.py), for environments without the console script."""
import sys

from one2any_ros.apps.cli import main

sys.exit(main())
