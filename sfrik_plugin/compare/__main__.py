"""python -m sfrik_plugin.compare (= sfrik-compare)."""

from sfrik_plugin.compare import main

if __name__ == "__main__":
    main()
