"""ETL and streaming jobs of the platform: runnable by hand (`python -m parse_sources --help`) and by Airflow."""
