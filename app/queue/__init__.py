"""The run queue: change events, dispatch to machines, and the timeout sweeper."""
