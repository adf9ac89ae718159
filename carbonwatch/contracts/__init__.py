"""Contracts shared by every part of carbonwatch, defined once and imported everywhere.

- :mod:`.site`: the site configuration (YAML, pydantic).
- :mod:`.payload`: MQTT topics and payload schema between gateway and collector.
- :mod:`.carriers`: energy carriers and units.
- :mod:`.regions`: GB/T 2260 provinces and regional grids.

The database schema lives in ``collector/migrations`` (SQL), applied by ``carbonwatch db migrate``.
"""
