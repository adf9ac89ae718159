"""Meter simulators: Modbus TCP/RTU servers that behave like the plant meters a site file names.

``carbonwatch simulate --site FILE`` serves every meter of the file, so the agent can be
proved against them before it touches a real plant.
"""
