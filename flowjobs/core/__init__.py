"""The engine: task registry, retry policy, executor, worker, clock. Knows nothing about billing."""
