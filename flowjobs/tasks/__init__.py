"""Built-in tasks, laid out like the seed's trigger/ directory: one task per module.

BUILTIN_MODULES is the explicit list of modules whose tasks are registered.
"""

BUILTIN_MODULES = [
    "flowjobs.tasks.hello_world",
    "flowjobs.tasks.noop",
]
