"""Output for people and programs: text tables, CSV, JSON documents, plots and export files.

It takes data (DataFrames, documents, rows) and never queries the database itself.
"""
