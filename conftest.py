"""Repository-wide test settings, for the core's tests and every plugin's.

Tests keep frozen features in memory only: the on-disk feature store (:mod:`cl_core.feature_store`) would let one
test run serve the next from disk and hide what a test counts (trunk passes). Tests of the store set their own
folder.
"""

import os

os.environ["CL_FEATURE_STORE"] = "off"
