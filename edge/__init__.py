"""Edge gateway agent: polls meters over Modbus, buffers on disk, publishes over MQTT.

Installed with ``pip install carbonwatch[edge]``: pymodbus and an MQTT client, nothing of
the centre (no numba, FastAPI or psycopg).
"""
