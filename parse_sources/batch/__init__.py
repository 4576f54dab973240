"""Batch ETL: files and HTTP APIs → `raw` (as received) → `curated` (typed, merged by key) → `consumption`.

Each load is one transaction, so a failed batch leaves no trace, and a batch that is loaded again changes
nothing. Run by hand with `python -m parse_sources batch-load --help`, or from an Airflow DAG.
"""
