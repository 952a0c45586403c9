"""hello.py as a warm spare: waits like ``conveyor serve`` does, then serves as hello.py.

With ``CONVEYOR_WARM_SPARE`` set it prints a line, waits to be activated
(:mod:`conveyor.serving.warm`), and only then reads its port.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

from conveyor.serving.warm import await_activation

print(f"loaded as pid {os.getpid()}", flush=True)
activated = await_activation()
print(f"activated={activated} index={os.environ.get('CONVEYOR_INSTANCE_INDEX')}", flush=True)
sys.argv = [str(Path(__file__).with_name("hello.py"))]
runpy.run_path(sys.argv[0], run_name="__main__")
