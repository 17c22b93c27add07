"""The ``kvbox`` command and its subcommands (``main`` lists them)."""
