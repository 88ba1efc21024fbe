"""python -m services.trainer"""

from evolver.service import main
from services.trainer.servicer import build

if __name__ == "__main__":
    main("trainer", build)
