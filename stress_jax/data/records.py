"""Old home of the clip record, now `stress_jax.faces.records`: this name is the same module.

Kept only while the Yonsei builder and tests (being replaced on another branch)
still import it from here; delete once nothing does.
"""

import sys

from stress_jax.faces import records

sys.modules[__name__] = records
