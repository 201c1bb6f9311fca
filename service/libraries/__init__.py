"""Learnings libraries: what experiments share, their item operations, tag effects across
campaigns."""
