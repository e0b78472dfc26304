"""``sluice server``: a team tracking server, PostgreSQL plus ``mlflow server`` on it.

The server has basic authentication (its user database on the same PostgreSQL, an admin password
generated on first start) and proxies artifacts (to a local folder, or ``s3://...``). Everything
it keeps lies in one git-ignored folder, ``.sluice/server/`` by default. Both services listen on
127.0.0.1 only. An entry-point concern: it manages processes and files, and imports only the
layers below it.
"""
