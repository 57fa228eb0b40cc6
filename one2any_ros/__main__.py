"""``python -m one2any_ros ...``: the ``one2any`` command (apps/cli.py), for environments without the console script;
also what ``torchrun --nproc_per_node=K -m one2any_ros train ...`` runs in each process."""
import sys

from one2any_ros.apps.cli import main

sys.exit(main())
