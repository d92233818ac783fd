"""Load tests of the ranking service: a locustfile and the `watchtime bench` command.

`load_tests.bench` starts the service, drives it with an open-loop load
generator (`load_tests.loadgen`) and compares it with two references: the
in-process ranking pipeline (`load_tests.floor`) and a naive FastAPI endpoint
(`load_tests.naive_app`).
"""
