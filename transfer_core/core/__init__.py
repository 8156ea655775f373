"""The records everything else shares: the run configuration, typed events, device choice, metrics, advice.
Imports nothing else of the engine."""
