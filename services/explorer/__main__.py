"""python -m services.explorer"""

from evolver.service import main
from services.explorer.app import build

if __name__ == "__main__":
    main("explorer", build)
