"""Use cases that write: one cron run over every gateway (`run`), reading one gateway's endpoints (`read`),
`collect --every` (`every`), the auth commands, and the database as the gateway layer's token store.
"""
