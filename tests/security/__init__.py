"""Hostile input: every option, setting and id a user can supply (issue 12, guard 3)."""
