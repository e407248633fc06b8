# Fixtures live in sorafix/*.py, one module per area, so that tests of
# different areas can grow without touching a shared file. Every module
# there is loaded as a pytest plugin.
import glob
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
pytest.register_assert_rewrite("sorafix")

pytest_plugins = sorted(
    "sorafix." + os.path.splitext(os.path.basename(p))[0]
    for p in glob.glob(os.path.join(os.path.dirname(__file__), "sorafix", "*.py"))
    if not p.endswith("__init__.py")
)
