"""Subcommands of the ``symdl`` CLI that sit above every other layer."""
