"""Every key this package adds to auto-circuit's registries, in one place.

``register()`` adds exactly these and refuses to overwrite a key it does not own.
"""

# PRUNE_ALGO_DICT keys
ALGO_PREFIX = "DCD "

# PRUNE_METRIC_DICT keys
METRIC_PREFIX = "DCD "

# TASK_DICT keys
TASK_PREFIX = "DCD "
