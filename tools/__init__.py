"""Maintenance commands: installing GPU libraries, checking a GPU machine end to end."""
