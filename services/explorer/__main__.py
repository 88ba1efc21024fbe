"""python -m services.explorer"""

from evolver.service import main
from services.explorer.servicer import build

if __name__ == "__main__":
    main("explorer", build)
