"""The demo: a simulated day through the real collector (`tour`), and months of history stored fast."""
