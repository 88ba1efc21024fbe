"""python -m examples.inventory_env [--port N]: the example environment as its own process."""

import sys

from evolver.envs.serve import main

if __name__ == "__main__":
    main(["examples.inventory_env.environment:InventoryEnvironment", *sys.argv[1:]])
