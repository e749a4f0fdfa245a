"""``python -m gradscope``: the same command line as the ``gradscope`` console script."""

from gradscope.cli import main

if __name__ == "__main__":
    main()
