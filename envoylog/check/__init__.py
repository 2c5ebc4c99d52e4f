"""`envoylog check`: the owner's watchdog over the stored history (a stopped logger, a silent or lagging
inverter, a production drop, a token that cannot be renewed, a session storm, a firmware change, clock drift).

`findings.py` holds the rules, over plain data; `history.py` the queries that give them their data;
`watch.py` runs them per gateway and remembers what was said (`db/findings.py`), so that under cron each
problem is said once a day at most and once when it clears.
"""
