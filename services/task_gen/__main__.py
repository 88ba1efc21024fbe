"""python -m services.task_gen"""

from evolver.service import main
from services.task_gen.app import build

if __name__ == "__main__":
    main("task_gen", build)
