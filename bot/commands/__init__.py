"""Commands and processes: the CLI, serve, the worker, runtime wiring, the simulator."""
