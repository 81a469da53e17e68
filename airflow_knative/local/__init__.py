"""The local stack: the same executor, workers and gateway as processes on one machine."""
