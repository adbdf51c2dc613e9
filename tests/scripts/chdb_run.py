#!/usr/bin/env python3
"""Runs SQL statements on the current ClickHouse engine in-process (chDB).

Reads JSON from stdin: {"statements": [{"name": ..., "sql": ...}, ...]} and
executes them in order in one chDB session (a fresh temporary database
path), writing JSON to stdout: [{"name", "ok", "output" | "error"}, ...].
Used by tests/tests/sql_compat.rs so every DDL statement and query the
project issues is also run on ClickHouse 26.x, not only on 18.16.

chDB reads a config.xml from the working directory if there is one, so the
caller runs this from an empty temporary directory.
"""
import json
import sys
import tempfile

from chdb import session


def main() -> None:
    request = json.load(sys.stdin)
    results = []
    with tempfile.TemporaryDirectory() as path:
        sess = session.Session(path)
        for stmt in request["statements"]:
            try:
                out = sess.query(stmt["sql"], "TabSeparated")
                results.append({"name": stmt["name"], "ok": True, "output": str(out)})
            except Exception as e:  # chDB raises plain exceptions with the server message
                results.append({"name": stmt["name"], "ok": False, "error": str(e)})
        sess.close()
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
