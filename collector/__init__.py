"""Collector: MQTT telemetry into PostgreSQL/TimescaleDB, exactly-once in effect.

Messages are acknowledged to the broker only after their rows are committed; rows are keyed
by (point, time), so a redelivery inserts nothing twice.
"""
