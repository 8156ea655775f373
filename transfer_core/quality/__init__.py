"""Checking a data set: duplicates, suspected wrong labels, moving files between classes."""
