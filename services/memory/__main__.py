"""python -m services.memory"""

from evolver.service import main
from services.memory.app import build

if __name__ == "__main__":
    main("memory", build)
