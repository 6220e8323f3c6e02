"""Job tables over the DB-API: connections, the named SQL per dialect, migrations.

The hot path (enqueue, claim, heartbeat, finish, rescue) runs over plain sqlite3 / psycopg
connections so that `flowjobs trigger` never imports an ORM.
"""
