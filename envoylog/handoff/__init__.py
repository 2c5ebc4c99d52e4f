"""Handing the readings on after a collect: a Prometheus textfile, MQTT for Home Assistant.

envoylog is meant to be the one poller of the gateway; what it read goes on to the tools that would otherwise
poll it again. `state.py` gathers what a run knows (from the run and the database) into plain data; each
writer (`textfile.py`, `mqtt.py`) turns that into its own format and is imported only when configured, so
a cron `collect` that hands nothing on pays nothing for it.
"""
