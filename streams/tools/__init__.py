"""Commands people run around the worker: demo, bench, chaos, produce, consume, simulate, and the CLI."""
