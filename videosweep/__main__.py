"""``python -m videosweep``: the ``videosweep`` command line."""

from videosweep.flows.cli import main

if __name__ == "__main__":
    main()
