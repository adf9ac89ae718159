"""Upload of energy and CO2 indicators to the online monitoring platforms (重点用能单位能耗在线监测).

``config`` reads the upload file, ``indicators`` builds 15-minute, daily and monthly indicator
documents from the database's intervals and rollups with the accounting core's factors,
``sender`` posts them over HTTPS and checks the acknowledgement, and ``service`` runs one
builder and one independent sender per destination, retransmitting until acknowledged.
"""
