"""python -m services.attributor"""

from evolver.service import main
from services.attributor.servicer import build

if __name__ == "__main__":
    main("attributor", build)
