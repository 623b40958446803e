"""Old home of the face geometry, now `stress_jax.faces.geometry`: this name is the same module.

Kept only while code on other branches still imports it from here; delete once
nothing does.
"""

import sys

from stress_jax.faces import geometry

sys.modules[__name__] = geometry
