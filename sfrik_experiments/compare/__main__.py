"""python -m sfrik_experiments.compare (= sfrik-compare)."""

from sfrik_experiments.compare.cli import main

if __name__ == "__main__":
    main()
