"""Accounting core: energy flows to standard coal (tce) and CO2 by the nationally unified method.

A pure core: functions take arrays (or plain values) and return arrays. Nothing here opens a
database, a socket or a web framework; the collector and the API call in with data they read.
"""

METHOD_VERSION = "cw-2026.1"
