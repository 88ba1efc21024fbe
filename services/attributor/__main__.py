"""python -m services.attributor"""

from evolver.service import main
from services.attributor.app import build

if __name__ == "__main__":
    main("attributor", build)
