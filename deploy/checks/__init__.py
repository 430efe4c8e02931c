"""The checks behind deploy/validate.py, one module per kind of file (see validate.py)."""
