"""python -m services.trainer"""

from evolver.service import main
from services.trainer.app import build

if __name__ == "__main__":
    main("trainer", build)
