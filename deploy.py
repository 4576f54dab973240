#!/usr/bin/env python3
"""Sawmill's entry point: `python deploy.py --help`. Everything else lives in the `stack` package."""

from stack.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
