"""Helpers behind the ``qengine`` command line: they compute and return data; only
``qengine/cli.py`` prints or writes files."""
