"""Extraction: sources declared in include/sources/*.yaml, read page by page into the warehouse."""
