"""python -m sfrik_plugin.compare (= sfrik-compare)."""

from sfrik_plugin.compare.cli import main

if __name__ == "__main__":
    main()
