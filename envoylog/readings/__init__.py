"""Pure parsing and the source rules: the gateway's bytes in, frozen dataclasses out; no I/O, no database.

`model` holds the dataclasses, `parse` the parsers, `endpoints` the registry of endpoints, `discovery` what a
gateway's hardware is, `sources` which answer each series comes from, `plausible` the physical bounds.
"""
