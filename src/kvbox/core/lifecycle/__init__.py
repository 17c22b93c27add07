"""Bucket lifecycle: ``rules`` (pure: what is due, and when) and ``worker`` (the background
task that applies them through the Store, with object lock having the last word)."""
