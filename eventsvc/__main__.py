import sys

from eventsvc.cli import main

if __name__ == "__main__":  # not when a spawned child (the rebuild applier) imports it
    sys.exit(main())
