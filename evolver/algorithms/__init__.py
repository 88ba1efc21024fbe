"""Pure algorithms: no I/O, tested directly."""
