"""``python -m videosweep.flows.cli``: the ``videosweep`` command line."""

from videosweep.flows.cli import main

if __name__ == "__main__":
    main()
