"""``torchrun --nproc_per_node N -m qwen3.train CONFIG [KEY=VALUE ...] [--resume]``."""

import sys

from qwen3.train.cli import main

sys.exit(main())
