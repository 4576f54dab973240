"""Data quality: measure tables along six dimensions, store every result in schema `quality`, fail loudly.

`python -m parse_sources quality --suite flights` runs a suite by hand; the `quality` DAG runs each table's
dimensions as tasks, and a failed check fails its task with what was measured, what was allowed and where
to look.
"""
